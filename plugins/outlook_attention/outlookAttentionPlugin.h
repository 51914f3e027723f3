/*
 * TensorRT IPluginV3 wrapper of the fused outlook-attention core (VOLO).
 *
 * Plugin "OutlookAttention", version "1", namespace "volo".
 *   input 0  v     (B, H, W, C)                 float32 or float16, linear
 *   input 1  attn  (B, ceil(H/s), ceil(W/s), num_heads * k^4), same type (unscaled logits)
 *   output 0 out   (B, H, W, C), same type
 * Fields: kernel_size, padding, stride, num_heads (kINT32), scale (kFLOAT32).
 */
#ifndef VOLO_OUTLOOK_ATTENTION_PLUGIN_H
#define VOLO_OUTLOOK_ATTENTION_PLUGIN_H

#include "NvInfer.h"
#include "NvInferRuntime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace volo
{
namespace plugin
{

constexpr char const* kPLUGIN_NAME{"OutlookAttention"};
constexpr char const* kPLUGIN_VERSION{"1"};
constexpr char const* kPLUGIN_NAMESPACE{"volo"};

constexpr char const* kFIELD_KERNEL_SIZE{"kernel_size"};
constexpr char const* kFIELD_PADDING{"padding"};
constexpr char const* kFIELD_STRIDE{"stride"};
constexpr char const* kFIELD_NUM_HEADS{"num_heads"};
constexpr char const* kFIELD_SCALE{"scale"};

//! Static attributes of one outlook-attention core.
struct OutlookAttentionParams
{
    int32_t kernelSize{3};
    int32_t padding{1};
    int32_t stride{2};
    int32_t numHeads{1};
    float scale{1.F};
};

//! Throws std::invalid_argument when a value is out of range.
void validateParams(OutlookAttentionParams const& params);

//! Parses a field collection (ONNX node attributes or serialized fields). Every attribute is
//! required; `plugin_namespace` / `plugin_version` are accepted and ignored. Throws on error.
OutlookAttentionParams parseFields(nvinfer1::PluginFieldCollection const* fc);

//! Logs through the logger TensorRT handed to setLoggerFinder, else to stderr.
void logMessage(nvinfer1::ILogger::Severity severity, char const* msg) noexcept;

class OutlookAttentionPlugin : public nvinfer1::IPluginV3,
                               public nvinfer1::IPluginV3OneCore,
                               public nvinfer1::IPluginV3OneBuild,
                               public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit OutlookAttentionPlugin(OutlookAttentionParams const& params);
    OutlookAttentionPlugin(OutlookAttentionPlugin const& other);
    OutlookAttentionPlugin& operator=(OutlookAttentionPlugin const&) = delete;
    ~OutlookAttentionPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    OutlookAttentionParams const& params() const noexcept
    {
        return mParams;
    }

private:
    //! Checks ranks, the attn channel count and the attn grid where dimensions are known (>= 0).
    bool checkDims(nvinfer1::Dims const& v, nvinfer1::Dims const& attn) const noexcept;

    OutlookAttentionParams mParams;
    std::vector<nvinfer1::PluginField> mDataToSerialize;
    nvinfer1::PluginFieldCollection mFCToSerialize{};
};

class OutlookAttentionPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    OutlookAttentionPluginCreator();
    ~OutlookAttentionPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mPluginAttributes;
    nvinfer1::PluginFieldCollection mFC{};
};

} // namespace plugin
} // namespace volo

//! Entry points of a TensorRT plugin library (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins).
extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(
    int32_t& nbCreators);
extern "C" __attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder);

#endif // VOLO_OUTLOOK_ATTENTION_PLUGIN_H
