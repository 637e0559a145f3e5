// EdgesegFusedDDC TensorRT plugin and its creator; see fusedDDCPlugin.h for the interface.
//
// The library exports getCreators() and setLoggerFinder(), the entry points TensorRT looks for when
// it loads a plugin library (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins), so nothing here
// calls into libnvinfer and the library links against CUDA only. It registers nothing when merely
// dlopen'ed (trtexec --staticPlugins, Polygraphy --plugins): those need a loadLibrary call.
#include "fusedDDCPlugin.h"

#include <cstring>
#include <exception>
#include <mutex>
#include <new>
#include <string>

#include "edgeseg/fused_ddc_launch.h"

using namespace nvinfer1;

namespace edgeseg {
namespace trt {
namespace {

// ---- logging through the logger TensorRT hands over in setLoggerFinder ----------------------------
std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder = nullptr;

void logError(std::string const& message) noexcept {
    try {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        ILogger* logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
        if (logger != nullptr) logger->log(ILogger::Severity::kERROR, (std::string(kFusedDDCName) + ": " + message).c_str());
    } catch (...) {
        // Logging must never throw out of a noexcept TensorRT callback.
    }
}

bool isSupportedType(DataType t) { return t == DataType::kFLOAT || t == DataType::kHALF; }

// Parses the "dilations" field: four positive values, kINT32 (what the ONNX parser makes of an
// INTS attribute) or kINT64.
bool parseDilations(PluginFieldCollection const* fc, std::array<int32_t, 4>& out) {
    if (fc == nullptr) return false;
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr || std::strcmp(f.name, "dilations") != 0) continue;
        if (f.length != 4 || f.data == nullptr) return false;
        for (int b = 0; b < 4; ++b) {
            int64_t v = 0;
            if (f.type == PluginFieldType::kINT32) {
                v = static_cast<int32_t const*>(f.data)[b];
            } else if (f.type == PluginFieldType::kINT64) {
                v = static_cast<int64_t const*>(f.data)[b];
            } else {
                return false;
            }
            if (v < 1 || v > 1024) return false;
            out[b] = static_cast<int32_t>(v);
        }
        return true;
    }
    return false;
}

}  // namespace

// ---- FusedDDCPlugin ---------------------------------------------------------------------------------

FusedDDCPlugin::FusedDDCPlugin(std::array<int32_t, 4> const& dilations) : mDilations(dilations) {}

IPluginCapability* FusedDDCPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept {
    switch (type) {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* FusedDDCPlugin::clone() noexcept {
    try {
        auto* copy = new FusedDDCPlugin(mDilations);
        copy->mHasResidual = mHasResidual;
        return copy;
    } catch (std::exception const& e) {
        logError(std::string("clone failed: ") + e.what());
        return nullptr;
    }
}

char const* FusedDDCPlugin::getPluginName() const noexcept { return kFusedDDCName; }
char const* FusedDDCPlugin::getPluginVersion() const noexcept { return kFusedDDCVersion; }
char const* FusedDDCPlugin::getPluginNamespace() const noexcept { return kFusedDDCNamespace; }

int32_t FusedDDCPlugin::getNbOutputs() const noexcept { return 1; }

bool FusedDDCPlugin::validShapes(Dims const* in, int32_t nbInputs, Dims const& out) const noexcept {
    if (nbInputs < kMinInputs || nbInputs > kMaxInputs) return false;
    Dims const& x = in[kInputX];
    if (x.nbDims != 4) return false;
    int64_t const n = x.d[0], c = x.d[1], h = x.d[2], w = x.d[3];
    // -1 (a dynamic dimension at build time) matches anything.
    auto same = [](int64_t a, int64_t b) { return a == -1 || b == -1 || a == b; };
    auto is = [&](Dims const& d, std::initializer_list<int64_t> want) {
        if (d.nbDims != static_cast<int32_t>(want.size())) return false;
        int32_t i = 0;
        for (int64_t v : want) {
            if (!same(d.d[i++], v)) return false;
        }
        return true;
    };
    int64_t const c5 = c == -1 ? -1 : 5 * c;
    return is(in[kInputWeight], {4, c, 3, 3}) && is(in[kInputScale], {4, c}) && is(in[kInputShift], {4, c}) &&
           is(in[kInputPooled], {n, c}) && (nbInputs == kMinInputs || is(in[kInputResidual], {n, c5, h, w})) &&
           is(out, {n, c5, h, w});
}

int32_t FusedDDCPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                        DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    if (in == nullptr || out == nullptr || nbOutputs != 1 || nbInputs < kMinInputs || nbInputs > kMaxInputs) {
        logError("configurePlugin: expected 5 or 6 inputs and 1 output");
        return -1;
    }
    Dims dims[kMaxInputs];
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = in[i].desc.dims;
    if (!validShapes(dims, nbInputs, out[0].desc.dims)) {
        logError("configurePlugin: input shapes do not match x (N,C,H,W), weight (4,C,3,3), scale/shift (4,C), "
                 "pooled (N,C), residual (N,5C,H,W)");
        return -1;
    }
    mHasResidual = nbInputs == kMaxInputs;
    return 0;
}

int32_t FusedDDCPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                           int32_t nbInputs) const noexcept {
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs < kMinInputs ||
        nbInputs > kMaxInputs || !isSupportedType(inputTypes[kInputX])) {
        logError("getOutputDataTypes: expected 5 or 6 FP32 / FP16 inputs and 1 output");
        return -1;
    }
    outputTypes[0] = inputTypes[kInputX];
    return 0;
}

int32_t FusedDDCPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                                        int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                                        IExprBuilder& exprBuilder) noexcept {
    if (inputs == nullptr || outputs == nullptr || nbOutputs != 1 || nbInputs < kMinInputs ||
        nbInputs > kMaxInputs || inputs[kInputX].nbDims != 4) {
        logError("getOutputShapes: expected x of rank 4, 5 or 6 inputs and 1 output");
        return -1;
    }
    DimsExprs const& x = inputs[kInputX];
    outputs[0].nbDims = 4;
    outputs[0].d[0] = x.d[0];
    outputs[0].d[1] = exprBuilder.operation(DimensionOperation::kPROD, *x.d[1], *exprBuilder.constant(5));
    outputs[0].d[2] = x.d[2];
    outputs[0].d[3] = x.d[3];
    return 0;
}

bool FusedDDCPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                               int32_t nbOutputs) noexcept {
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs) return false;
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR) return false;
    // Every tensor takes x's type: TensorRT asks about positions in order, so x (pos 0) is settled
    // by the time the others are asked.
    return pos == kInputX ? isSupportedType(desc.type) : desc.type == inOut[kInputX].desc.type;
}

int32_t FusedDDCPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                                      int32_t nbOutputs) noexcept {
    if (in == nullptr || out == nullptr || nbOutputs != 1 || nbInputs < kMinInputs || nbInputs > kMaxInputs) {
        logError("onShapeChange: expected 5 or 6 inputs and 1 output");
        return -1;
    }
    Dims dims[kMaxInputs];
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = in[i].dims;
    if (!validShapes(dims, nbInputs, out[0].dims)) {
        logError("onShapeChange: inconsistent input / output shapes");
        return -1;
    }
    mHasResidual = nbInputs == kMaxInputs;
    return 0;
}

int32_t FusedDDCPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
                                void const* const* inputs, void* const* outputs, void* /*workspace*/,
                                cudaStream_t stream) noexcept {
    Dims const& x = inputDesc[kInputX].dims;
    fused_ddc::Shape shape{x.d[0], x.d[1], static_cast<int>(x.d[2]), static_cast<int>(x.d[3]),
                           {mDilations[0], mDilations[1], mDilations[2], mDilations[3]}};
    auto const dtype =
        inputDesc[kInputX].type == DataType::kHALF ? fused_ddc::DType::kFloat16 : fused_ddc::DType::kFloat32;
    cudaError_t const err = fused_ddc::launch_forward_cuda(
        shape, dtype, inputs[kInputX], inputs[kInputWeight], inputs[kInputScale], inputs[kInputShift],
        inputs[kInputPooled], mHasResidual ? inputs[kInputResidual] : nullptr, outputs[0], stream);
    if (err != cudaSuccess) {
        logError(std::string("enqueue: kernel launch failed: ") + cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

IPluginV3* FusedDDCPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept { return clone(); }

PluginFieldCollection const* FusedDDCPlugin::getFieldsToSerialize() noexcept {
    // Rebuilt on every call: the fields point into this object, which clone() does not share.
    mSerialized.clear();
    mSerialized.emplace_back("dilations", mDilations.data(), PluginFieldType::kINT32, 4);
    mSerializedCollection.nbFields = static_cast<int32_t>(mSerialized.size());
    mSerializedCollection.fields = mSerialized.data();
    return &mSerializedCollection;
}

// ---- FusedDDCPluginCreator --------------------------------------------------------------------------

FusedDDCPluginCreator::FusedDDCPluginCreator() {
    mFields.emplace_back("dilations", nullptr, PluginFieldType::kINT32, 4);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* FusedDDCPluginCreator::getPluginName() const noexcept { return kFusedDDCName; }
char const* FusedDDCPluginCreator::getPluginVersion() const noexcept { return kFusedDDCVersion; }
char const* FusedDDCPluginCreator::getPluginNamespace() const noexcept { return kFusedDDCNamespace; }
PluginFieldCollection const* FusedDDCPluginCreator::getFieldNames() noexcept { return &mFieldCollection; }

IPluginV3* FusedDDCPluginCreator::createPlugin(char const* name, PluginFieldCollection const* fc,
                                               TensorRTPhase /*phase*/) noexcept {
    std::array<int32_t, 4> dilations{};
    if (!parseDilations(fc, dilations)) {
        logError(std::string("createPlugin(") + (name != nullptr ? name : "") +
                 "): field 'dilations' must be 4 INT32 values in [1, 1024]");
        return nullptr;
    }
    try {
        return new FusedDDCPlugin(dilations);
    } catch (std::exception const& e) {
        logError(std::string("createPlugin failed: ") + e.what());
        return nullptr;
    }
}

}  // namespace trt
}  // namespace edgeseg

// ---- library entry points ---------------------------------------------------------------------------
// TensorRT's own TENSORRTAPI is empty outside TensorRT's build, and the library is compiled with hidden
// visibility, so the two entry points are exported explicitly.
#define EDGESEG_PLUGIN_EXPORT __attribute__((visibility("default")))

extern "C" EDGESEG_PLUGIN_EXPORT IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    static edgeseg::trt::FusedDDCPluginCreator fusedDDCCreator;
    static IPluginCreatorInterface* const creators[] = {&fusedDDCCreator};
    nbCreators = 1;
    return creators;
}

extern "C" EDGESEG_PLUGIN_EXPORT void setLoggerFinder(ILoggerFinder* finder) {
    std::lock_guard<std::mutex> lock(edgeseg::trt::gLoggerMutex);
    edgeseg::trt::gLoggerFinder = finder;
}
