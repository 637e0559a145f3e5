// TensorRT plugin of the fused DDC op: EdgesegFusedDDC, version "1", namespace "edgeseg" (IPluginV3).
//
// The engine-side twin of torch.ops.edgeseg.fused_ddc; enqueue calls the same CUDA launcher
// (include/edgeseg/fused_ddc_launch.h) as the PyTorch op.
//
// Interface (what edgeseg/ops/onnx_plugin.py writes into the ONNX node):
//   field   dilations  kINT32 x 4 (an ONNX INTS attribute; kINT64 is accepted too)
//   input 0 x          (N, C, H, W)
//   input 1 weight     (4, C, 3, 3)   depthwise kernels            } ONNX initializers, so build-time
//   input 2 scale      (4, C)         folded BN scale per branch   } constants in the engine; inputs
//   input 3 shift      (4, C)         folded BN shift per branch   } rather than fields, so FP16
//   input 4 pooled     (N, C)         pooling-branch vector          graphs carry FP16 weights and
//   input 5 residual   (N, 5C, H, W)  optional                       the plugin holds no device memory
//   output 0 y         (N, 5C, H, W)  same type as x
// Types: all tensors kFLOAT, or all kHALF (FP32 accumulation); format: linear NCHW.
#pragma once

#include <NvInferRuntime.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace edgeseg {
namespace trt {

constexpr char const* kFusedDDCName = "EdgesegFusedDDC";
constexpr char const* kFusedDDCVersion = "1";
constexpr char const* kFusedDDCNamespace = "edgeseg";

// Tensor positions of the plugin's inputs and output (see the table above).
enum FusedDDCIO : int32_t {
    kInputX = 0,
    kInputWeight = 1,
    kInputScale = 2,
    kInputShift = 3,
    kInputPooled = 4,
    kInputResidual = 5,
    kMinInputs = 5,
    kMaxInputs = 6,
};

class FusedDDCPlugin : public nvinfer1::IPluginV3,
                       public nvinfer1::IPluginV3OneCore,
                       public nvinfer1::IPluginV3OneBuild,
                       public nvinfer1::IPluginV3OneRuntime {
public:
    explicit FusedDDCPlugin(std::array<int32_t, 4> const& dilations);
    ~FusedDDCPlugin() override = default;

    std::array<int32_t, 4> const& dilations() const noexcept { return mDilations; }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                               nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                            nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs,
                            nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    // Shape checks shared by configurePlugin (build) and onShapeChange (runtime).
    bool validShapes(nvinfer1::Dims const* in, int32_t nbInputs, nvinfer1::Dims const& out) const noexcept;

    std::array<int32_t, 4> mDilations;
    bool mHasResidual{true};  // set from the input count before any enqueue
    std::vector<nvinfer1::PluginField> mSerialized;
    nvinfer1::PluginFieldCollection mSerializedCollection{};
};

class FusedDDCPluginCreator : public nvinfer1::IPluginCreatorV3One {
public:
    FusedDDCPluginCreator();
    ~FusedDDCPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    // Same fields in every phase: the build-time ONNX attributes and getFieldsToSerialize agree.
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

}  // namespace trt
}  // namespace edgeseg
