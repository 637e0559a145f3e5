// Host-only smoke test of the EdgesegFusedDDC plugin library: no GPU, no libnvinfer.
//
// Loads the library the way TensorRT does (dlopen + getCreators / setLoggerFinder), then drives the
// creator and the plugin only through TensorRT's interface classes, as the builder and runtime
// would: field names, createPlugin from fields, capabilities, output types and shapes (with a small
// expression builder standing in for TensorRT's), format combinations, configure / onShapeChange
// checks, serialization round trip through getFieldsToSerialize, clone, and rejected fields.
// enqueue is not called: it needs a GPU.
//
// Usage: fused_ddc_plugin_smoke <path to libedgeseg_trt_plugins.so>
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

int gChecks = 0;
int gFailures = 0;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        ++gChecks;                                                                  \
        if (!(cond)) {                                                              \
            ++gFailures;                                                            \
            std::fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

// ---- a logger TensorRT would pass in; records errors so the test can expect them ----------------
class RecordingLogger : public ILogger {
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override {
        if (severity <= Severity::kERROR) errors.emplace_back(msg);
    }
    std::vector<std::string> errors;
};

class Finder : public ILoggerFinder {
public:
    explicit Finder(ILogger* logger) : mLogger(logger) {}
    ILogger* findLogger() override { return mLogger; }

private:
    ILogger* mLogger;
};

// ---- a minimal symbolic shape algebra standing in for TensorRT's IExprBuilder ---------------------
class ExprImpl : public apiv::VDimensionExpr {
public:
    ExprImpl(bool constant, int64_t value) : mConstant(constant), mValue(value) {}
    bool isConstant() const override { return mConstant; }
    int64_t getConstantValue() const override { return mConstant ? mValue : -1; }
    bool isSizeTensor() const override { return false; }

private:
    bool mConstant;
    int64_t mValue;
};

class Expr : public IDimensionExpr {
public:
    Expr(bool constant, int64_t value) : mOwn(constant, value) { mImpl = &mOwn; }
    ~Expr() noexcept override = default;

private:
    ExprImpl mOwn;
};

class BuilderImpl : public apiv::VExprBuilder {
public:
    IDimensionExpr const* constant(int64_t value) override { return make(true, value); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override {
        if (op == DimensionOperation::kPROD && a.isConstant() && b.isConstant()) {
            return make(true, a.getConstantValue() * b.getConstantValue());
        }
        lastSymbolicOp = op;
        return make(false, 0);
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
        return nullptr;
    }
    IDimensionExpr const* make(bool constant, int64_t value) {
        exprs.push_back(std::make_unique<Expr>(constant, value));
        return exprs.back().get();
    }
    std::vector<std::unique_ptr<Expr>> exprs;
    DimensionOperation lastSymbolicOp{DimensionOperation::kSUM};
};

class Builder : public IExprBuilder {
public:
    Builder() { mImpl = &impl; }
    ~Builder() noexcept override = default;
    BuilderImpl impl;
};

// ---- helpers ------------------------------------------------------------------------------------
Dims dims(std::initializer_list<int64_t> values) {
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    int32_t i = 0;
    for (int64_t v : values) d.d[i++] = v;
    return d;
}

DynamicPluginTensorDesc desc(Dims const& d, DataType type, TensorFormat format = TensorFormat::kLINEAR) {
    DynamicPluginTensorDesc t{};
    t.desc.dims = d;
    t.desc.type = type;
    t.desc.format = format;
    t.min = d;
    t.opt = d;
    t.max = d;
    return t;
}

// x, weight, scale, shift, pooled, residual, y for N=2, C=4, H=7, W=9.
std::vector<DynamicPluginTensorDesc> ioDescs(DataType type, bool residual) {
    std::vector<DynamicPluginTensorDesc> v = {desc(dims({2, 4, 7, 9}), type), desc(dims({4, 4, 3, 3}), type),
                                              desc(dims({4, 4}), type), desc(dims({4, 4}), type),
                                              desc(dims({2, 4}), type)};
    if (residual) v.push_back(desc(dims({2, 20, 7, 9}), type));
    v.push_back(desc(dims({2, 20, 7, 9}), type));
    return v;
}

std::vector<int32_t> serializedDilations(IPluginV3* plugin) {
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc = runtime->getFieldsToSerialize();
    if (fc == nullptr || fc->nbFields != 1 || std::strcmp(fc->fields[0].name, "dilations") != 0 ||
        fc->fields[0].type != PluginFieldType::kINT32 || fc->fields[0].length != 4) {
        return {};
    }
    auto const* d = static_cast<int32_t const*>(fc->fields[0].data);
    return {d[0], d[1], d[2], d[3]};
}

IPluginV3* createWith(IPluginCreatorV3One* creator, PluginField const& field, TensorRTPhase phase) {
    PluginFieldCollection fc{1, &field};
    return creator->createPlugin("ddc", &fc, phase);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <plugin library>\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
        return 2;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    CHECK(getCreators != nullptr);
    CHECK(setLoggerFinder != nullptr);
    if (getCreators == nullptr || setLoggerFinder == nullptr) return 1;

    RecordingLogger logger;
    Finder finder(&logger);
    setLoggerFinder(&finder);

    // -- creator --------------------------------------------------------------------------------
    int32_t nbCreators = 0;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    CHECK(nbCreators == 1);
    CHECK(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    CHECK(std::strcmp(creator->getPluginName(), "EdgesegFusedDDC") == 0);
    CHECK(std::strcmp(creator->getPluginVersion(), "1") == 0);
    CHECK(std::strcmp(creator->getPluginNamespace(), "edgeseg") == 0);
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names->nbFields == 1);
    CHECK(std::strcmp(names->fields[0].name, "dilations") == 0);
    CHECK(names->fields[0].type == PluginFieldType::kINT32 && names->fields[0].length == 4);

    int32_t const dil[4] = {13, 16, 18, 20};
    PluginField const good("dilations", dil, PluginFieldType::kINT32, 4);
    IPluginV3* plugin = createWith(creator, good, TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (plugin == nullptr) return 1;
    CHECK(std::strcmp(plugin->getInterfaceInfo().kind, "PLUGIN") == 0);

    // -- core -----------------------------------------------------------------------------------
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    CHECK(core != nullptr && std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0);
    CHECK(std::strcmp(core->getPluginName(), "EdgesegFusedDDC") == 0);
    CHECK(std::strcmp(core->getPluginVersion(), "1") == 0);
    CHECK(std::strcmp(core->getPluginNamespace(), "edgeseg") == 0);

    // -- build ----------------------------------------------------------------------------------
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    CHECK(build != nullptr && std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0);
    CHECK(build->getNbOutputs() == 1);

    for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
        DataType in[6] = {t, t, t, t, t, t};
        DataType out = DataType::kINT8;
        CHECK(build->getOutputDataTypes(&out, 1, in, 6) == 0 && out == t);
        CHECK(build->getOutputDataTypes(&out, 1, in, 5) == 0 && out == t);
    }
    DataType bad[6] = {DataType::kINT32, DataType::kINT32, DataType::kINT32,
                       DataType::kINT32, DataType::kINT32, DataType::kINT32};
    DataType out = DataType::kFLOAT;
    CHECK(build->getOutputDataTypes(&out, 1, bad, 6) != 0);

    for (bool residual : {true, false}) {
        int32_t const nbIn = residual ? 6 : 5;
        for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
            auto io = ioDescs(t, residual);
            for (int32_t pos = 0; pos < nbIn + 1; ++pos) CHECK(build->supportsFormatCombination(pos, io.data(), nbIn, 1));
        }
        auto io = ioDescs(DataType::kFLOAT, residual);
        io[3].desc.type = DataType::kHALF;  // mixed types
        CHECK(!build->supportsFormatCombination(3, io.data(), nbIn, 1));
        io = ioDescs(DataType::kINT8, residual);
        CHECK(!build->supportsFormatCombination(0, io.data(), nbIn, 1));
        io = ioDescs(DataType::kFLOAT, residual);
        io[nbIn].desc.format = TensorFormat::kHWC8;  // non-linear output
        CHECK(!build->supportsFormatCombination(nbIn, io.data(), nbIn, 1));

        io = ioDescs(DataType::kHALF, residual);
        CHECK(build->configurePlugin(io.data(), nbIn, io.data() + nbIn, 1) == 0);
    }
    {
        auto io = ioDescs(DataType::kFLOAT, true);
        io[1].desc.dims = dims({4, 4, 5, 5});  // 5x5 kernels: not this op
        CHECK(build->configurePlugin(io.data(), 6, io.data() + 6, 1) != 0);
        io = ioDescs(DataType::kFLOAT, true);
        io[5].desc.dims = dims({2, 16, 7, 9});  // residual with 4C channels
        CHECK(build->configurePlugin(io.data(), 6, io.data() + 6, 1) != 0);
        io = ioDescs(DataType::kFLOAT, true);
        io[0].desc.dims = dims({-1, 4, 7, 9});  // dynamic batch at build time
        io[4].desc.dims = dims({-1, 4});
        io[5].desc.dims = dims({-1, 20, 7, 9});
        io[6].desc.dims = dims({-1, 20, 7, 9});
        CHECK(build->configurePlugin(io.data(), 6, io.data() + 6, 1) == 0);
    }

    {
        Builder exprs;
        IDimensionExpr const* n = exprs.impl.make(false, 0);  // symbolic batch
        DimsExprs in[6]{};
        auto set = [&](DimsExprs& d, std::initializer_list<IDimensionExpr const*> e) {
            d.nbDims = static_cast<int32_t>(e.size());
            int32_t i = 0;
            for (auto* p : e) d.d[i++] = p;
        };
        auto k = [&](int64_t v) { return exprs.constant(v); };
        set(in[0], {n, k(4), k(7), k(9)});
        set(in[1], {k(4), k(4), k(3), k(3)});
        set(in[2], {k(4), k(4)});
        set(in[3], {k(4), k(4)});
        set(in[4], {n, k(4)});
        set(in[5], {n, k(20), k(7), k(9)});
        DimsExprs outShape[1]{};
        CHECK(build->getOutputShapes(in, 6, nullptr, 0, outShape, 1, exprs) == 0);
        CHECK(outShape[0].nbDims == 4);
        CHECK(outShape[0].d[0] == n);  // batch passes through, symbolic
        CHECK(outShape[0].d[1]->isConstant() && outShape[0].d[1]->getConstantValue() == 20);  // 5 * C
        CHECK(outShape[0].d[2] == in[0].d[2] && outShape[0].d[3] == in[0].d[3]);
        set(in[0], {n, k(4), k(7)});  // rank 3 x
        CHECK(build->getOutputShapes(in, 6, nullptr, 0, outShape, 1, exprs) != 0);
    }

    // -- runtime --------------------------------------------------------------------------------
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    CHECK(runtime != nullptr && std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0);
    {
        auto io = ioDescs(DataType::kFLOAT, false);
        std::vector<PluginTensorDesc> plain;
        for (auto const& d : io) plain.push_back(d.desc);
        CHECK(runtime->onShapeChange(plain.data(), 5, plain.data() + 5, 1) == 0);
        plain[5].dims = dims({2, 21, 7, 9});
        CHECK(runtime->onShapeChange(plain.data(), 5, plain.data() + 5, 1) != 0);
    }
    CHECK((serializedDilations(plugin) == std::vector<int32_t>{13, 16, 18, 20}));

    // Serialization round trip: the runtime recreates the plugin from the serialized fields.
    PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
    IPluginV3* restored = creator->createPlugin("ddc", saved, TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    if (restored != nullptr) CHECK((serializedDilations(restored) == std::vector<int32_t>{13, 16, 18, 20}));

    IPluginV3* copy = plugin->clone();
    CHECK(copy != nullptr && copy != plugin);
    if (copy != nullptr) CHECK((serializedDilations(copy) == std::vector<int32_t>{13, 16, 18, 20}));
    IPluginV3* attached = runtime->attachToContext(nullptr);
    CHECK(attached != nullptr && attached != plugin);
    delete plugin;  // the copies must not depend on the original
    if (copy != nullptr) CHECK((serializedDilations(copy) == std::vector<int32_t>{13, 16, 18, 20}));
    delete copy;
    delete attached;
    delete restored;

    // kINT64 dilations are accepted too.
    int64_t const dil64[4] = {1, 3, 5, 7};
    IPluginV3* p64 = createWith(creator, PluginField("dilations", dil64, PluginFieldType::kINT64, 4),
                                TensorRTPhase::kBUILD);
    CHECK(p64 != nullptr);
    if (p64 != nullptr) CHECK((serializedDilations(p64) == std::vector<int32_t>{1, 3, 5, 7}));
    delete p64;

    // -- rejected fields: null plugin and an error through the logger ----------------------------
    size_t const errorsBefore = logger.errors.size();
    int32_t const three[3] = {1, 3, 5};
    int32_t const zero[4] = {0, 3, 5, 7};
    float const floats[4] = {1, 3, 5, 7};
    CHECK(createWith(creator, PluginField("dilations", three, PluginFieldType::kINT32, 3), TensorRTPhase::kBUILD) ==
          nullptr);
    CHECK(createWith(creator, PluginField("dilations", zero, PluginFieldType::kINT32, 4), TensorRTPhase::kBUILD) ==
          nullptr);
    CHECK(createWith(creator, PluginField("dilations", floats, PluginFieldType::kFLOAT32, 4),
                     TensorRTPhase::kBUILD) == nullptr);
    CHECK(createWith(creator, PluginField("other", dil, PluginFieldType::kINT32, 4), TensorRTPhase::kBUILD) ==
          nullptr);
    CHECK(logger.errors.size() == errorsBefore + 4);
    CHECK(!logger.errors.empty() && logger.errors.back().find("EdgesegFusedDDC") != std::string::npos);

    std::printf("%s: %d checks, %d failed\n", gFailures == 0 ? "PASS" : "FAIL", gChecks, gFailures);
    return gFailures == 0 ? 0 : 1;
}
