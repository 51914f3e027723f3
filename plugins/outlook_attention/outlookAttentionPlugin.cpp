/*
 * TensorRT IPluginV3 wrapper of the fused outlook-attention core. No exception crosses the
 * TensorRT boundary: every entry point is noexcept and reports errors through the plugin logger.
 */
#include "outlookAttentionPlugin.h"
#include "outlookAttentionKernel.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::ILogger;
using nvinfer1::IPluginCapability;
using nvinfer1::IPluginV3;
using nvinfer1::PluginCapabilityType;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

namespace volo
{
namespace plugin
{
namespace
{

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

constexpr char const* kFIELD_PLUGIN_NAMESPACE{"plugin_namespace"};
constexpr char const* kFIELD_PLUGIN_VERSION{"plugin_version"};
constexpr int32_t kMAX_KERNEL_SIZE{64};

std::string prefixed(std::string const& msg)
{
    return std::string{kPLUGIN_NAMESPACE} + "::" + kPLUGIN_NAME + " v" + kPLUGIN_VERSION + ": " + msg;
}

void logError(std::string const& msg) noexcept
{
    try
    {
        logMessage(ILogger::Severity::kERROR, prefixed(msg).c_str());
    }
    catch (...)
    {
        logMessage(ILogger::Severity::kERROR, msg.c_str());
    }
}

int64_t readInt(PluginField const& f)
{
    if (f.data == nullptr || f.length < 1)
    {
        throw std::invalid_argument(std::string{"field '"} + f.name + "' has no data");
    }
    switch (f.type)
    {
    case PluginFieldType::kINT32: return *static_cast<int32_t const*>(f.data);
    case PluginFieldType::kINT64: return *static_cast<int64_t const*>(f.data);
    default: throw std::invalid_argument(std::string{"field '"} + f.name + "' must be kINT32 (or kINT64)");
    }
}

int32_t readInt32(PluginField const& f)
{
    int64_t const x = readInt(f);
    if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
    {
        throw std::invalid_argument(std::string{"field '"} + f.name + "' out of int32 range");
    }
    return static_cast<int32_t>(x);
}

float readFloat(PluginField const& f)
{
    if (f.data == nullptr || f.length < 1)
    {
        throw std::invalid_argument(std::string{"field '"} + f.name + "' has no data");
    }
    switch (f.type)
    {
    case PluginFieldType::kFLOAT32: return *static_cast<float const*>(f.data);
    case PluginFieldType::kFLOAT64: return static_cast<float>(*static_cast<double const*>(f.data));
    default: throw std::invalid_argument(std::string{"field '"} + f.name + "' must be kFLOAT32 (or kFLOAT64)");
    }
}

int64_t ceilDiv64(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

} // namespace

void logMessage(ILogger::Severity severity, char const* msg) noexcept
{
    ILogger* logger = nullptr;
    nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
    if (finder != nullptr)
    {
        try
        {
            logger = finder->findLogger();
        }
        catch (...)
        {
            logger = nullptr;
        }
    }
    if (logger != nullptr)
    {
        logger->log(severity, msg);
    }
    else if (severity <= ILogger::Severity::kWARNING)
    {
        std::fprintf(stderr, "[volo] %s\n", msg);
    }
}

void validateParams(OutlookAttentionParams const& p)
{
    if (p.kernelSize < 1 || p.kernelSize > kMAX_KERNEL_SIZE)
    {
        throw std::invalid_argument("kernel_size must be in [1, 64], got " + std::to_string(p.kernelSize));
    }
    if (p.padding < 0)
    {
        throw std::invalid_argument("padding must be >= 0, got " + std::to_string(p.padding));
    }
    if (p.stride < 1)
    {
        throw std::invalid_argument("stride must be >= 1, got " + std::to_string(p.stride));
    }
    int64_t const kkkk = static_cast<int64_t>(p.kernelSize) * p.kernelSize * p.kernelSize * p.kernelSize;
    if (p.numHeads < 1 || kkkk * p.numHeads > std::numeric_limits<int32_t>::max())
    {
        throw std::invalid_argument("num_heads must be >= 1 with num_heads * k^4 < 2^31, got "
            + std::to_string(p.numHeads));
    }
    if (!std::isfinite(p.scale))
    {
        throw std::invalid_argument("scale must be finite");
    }
}

OutlookAttentionParams parseFields(PluginFieldCollection const* fc)
{
    if (fc == nullptr || (fc->nbFields > 0 && fc->fields == nullptr) || fc->nbFields < 0)
    {
        throw std::invalid_argument("null or malformed PluginFieldCollection");
    }
    OutlookAttentionParams p;
    bool seen[5] = {false, false, false, false, false};
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr)
        {
            throw std::invalid_argument("field with a null name");
        }
        if (std::strcmp(f.name, kFIELD_KERNEL_SIZE) == 0)
        {
            p.kernelSize = readInt32(f);
            seen[0] = true;
        }
        else if (std::strcmp(f.name, kFIELD_PADDING) == 0)
        {
            p.padding = readInt32(f);
            seen[1] = true;
        }
        else if (std::strcmp(f.name, kFIELD_STRIDE) == 0)
        {
            p.stride = readInt32(f);
            seen[2] = true;
        }
        else if (std::strcmp(f.name, kFIELD_NUM_HEADS) == 0)
        {
            p.numHeads = readInt32(f);
            seen[3] = true;
        }
        else if (std::strcmp(f.name, kFIELD_SCALE) == 0)
        {
            p.scale = readFloat(f);
            seen[4] = true;
        }
        else if (std::strcmp(f.name, kFIELD_PLUGIN_NAMESPACE) == 0 || std::strcmp(f.name, kFIELD_PLUGIN_VERSION) == 0)
        {
            continue; // ONNX dispatch attributes, not plugin parameters
        }
        else
        {
            throw std::invalid_argument(std::string{"unknown field '"} + f.name + "'");
        }
    }
    char const* names[5] = {kFIELD_KERNEL_SIZE, kFIELD_PADDING, kFIELD_STRIDE, kFIELD_NUM_HEADS, kFIELD_SCALE};
    for (int32_t i = 0; i < 5; ++i)
    {
        if (!seen[i])
        {
            throw std::invalid_argument(std::string{"missing field '"} + names[i] + "'");
        }
    }
    validateParams(p);
    return p;
}

// ---- plugin ---------------------------------------------------------------------------------------

OutlookAttentionPlugin::OutlookAttentionPlugin(OutlookAttentionParams const& params)
    : mParams(params)
{
    validateParams(mParams);
}

OutlookAttentionPlugin::OutlookAttentionPlugin(OutlookAttentionPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mParams(other.mParams)
{
}

IPluginCapability* OutlookAttentionPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* OutlookAttentionPlugin::clone() noexcept
{
    try
    {
        return std::make_unique<OutlookAttentionPlugin>(*this).release();
    }
    catch (std::exception const& e)
    {
        logError(std::string{"clone failed: "} + e.what());
    }
    catch (...)
    {
        logError("clone failed");
    }
    return nullptr;
}

char const* OutlookAttentionPlugin::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* OutlookAttentionPlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* OutlookAttentionPlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

int32_t OutlookAttentionPlugin::getNbOutputs() const noexcept
{
    return 1;
}

bool OutlookAttentionPlugin::checkDims(Dims const& v, Dims const& attn) const noexcept
{
    if (v.nbDims != 4 || attn.nbDims != 4)
    {
        logError("v and attn must be rank 4 (B, H, W, C) / (B, h, w, heads*k^4)");
        return false;
    }
    int64_t const k = mParams.kernelSize;
    int64_t const attnC = static_cast<int64_t>(mParams.numHeads) * k * k * k * k;
    if (attn.d[3] >= 0 && attn.d[3] != attnC)
    {
        logError("attn last dim must be num_heads * k^4 = " + std::to_string(attnC) + ", got "
            + std::to_string(attn.d[3]));
        return false;
    }
    if (v.d[3] >= 0 && v.d[3] % mParams.numHeads != 0)
    {
        logError("channels " + std::to_string(v.d[3]) + " not divisible by num_heads "
            + std::to_string(mParams.numHeads));
        return false;
    }
    if (v.d[0] >= 0 && attn.d[0] >= 0 && v.d[0] != attn.d[0])
    {
        logError("v and attn batch differ");
        return false;
    }
    for (int32_t axis = 1; axis <= 2; ++axis)
    {
        if (v.d[axis] >= 0 && attn.d[axis] >= 0 && attn.d[axis] != ceilDiv64(v.d[axis], mParams.stride))
        {
            logError("attn spatial dims must be ceil(v dims / stride)");
            return false;
        }
    }
    return true;
}

int32_t OutlookAttentionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != 2 || nbOutputs != 1)
    {
        logError("expects 2 inputs and 1 output");
        return -1;
    }
    return checkDims(in[0].desc.dims, in[1].desc.dims) ? 0 : -1;
}

bool OutlookAttentionPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != 2 || nbOutputs != 1 || pos < 0 || pos >= 3)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    }
    return desc.type == inOut[0].desc.type;
}

int32_t OutlookAttentionPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != 2)
    {
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t OutlookAttentionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /* shapeInputs */, int32_t /* nbShapeInputs */, DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& /* exprBuilder */) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != 2 || nbOutputs != 1 || inputs[0].nbDims != 4)
    {
        logError("getOutputShapes: expects 2 inputs, 1 output, v of rank 4");
        return -1;
    }
    outputs[0] = inputs[0]; // out has the shape of v (expressions, so dynamic shapes carry over)
    return 0;
}

size_t OutlookAttentionPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /* inputs */, int32_t /* nbInputs */,
    DynamicPluginTensorDesc const* /* outputs */, int32_t /* nbOutputs */) const noexcept
{
    return 0;
}

int32_t OutlookAttentionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (in == nullptr || out == nullptr || nbInputs != 2 || nbOutputs != 1)
    {
        logError("expects 2 inputs and 1 output");
        return -1;
    }
    return checkDims(in[0].dims, in[1].dims) ? 0 : -1;
}

int32_t OutlookAttentionPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* /* workspace */, cudaStream_t stream) noexcept
{
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        return -1;
    }
    Dims const& v = inputDesc[0].dims;
    Dims const& a = inputDesc[1].dims;
    if (v.nbDims != 4 || a.nbDims != 4)
    {
        logError("enqueue: v and attn must be rank 4");
        return -1;
    }
    for (int32_t i = 0; i < 4; ++i)
    {
        if (v.d[i] > std::numeric_limits<int32_t>::max() || a.d[i] > std::numeric_limits<int32_t>::max())
        {
            logError("enqueue: dimension exceeds int32");
            return -1;
        }
    }
    DataType const type = inputDesc[0].type;
    if ((type != DataType::kFLOAT && type != DataType::kHALF) || inputDesc[1].type != type)
    {
        logError("enqueue: unsupported data type");
        return -1;
    }
    int64_t const k = mParams.kernelSize;
    if (a.d[3] != static_cast<int64_t>(mParams.numHeads) * k * k * k * k || a.d[0] != v.d[0])
    {
        logError("enqueue: attn shape does not match the attributes");
        return -1;
    }
    int const dtype = type == DataType::kFLOAT ? VOLO_OUTLOOK_DTYPE_FP32 : VOLO_OUTLOOK_DTYPE_FP16;
    cudaError_t const status = volo_outlook_attention(inputs[0], inputs[1], outputs[0], dtype,
        static_cast<int>(v.d[0]), static_cast<int>(v.d[1]), static_cast<int>(v.d[2]), static_cast<int>(v.d[3]),
        static_cast<int>(a.d[1]), static_cast<int>(a.d[2]), mParams.kernelSize, mParams.padding, mParams.stride,
        mParams.numHeads, mParams.scale, stream);
    if (status != cudaSuccess)
    {
        logError(std::string{"enqueue: kernel failed: "} + cudaGetErrorName(status));
        return -1;
    }
    return 0;
}

IPluginV3* OutlookAttentionPlugin::attachToContext(nvinfer1::IPluginResourceContext* /* context */) noexcept
{
    return clone();
}

PluginFieldCollection const* OutlookAttentionPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mDataToSerialize.clear();
        mDataToSerialize.emplace_back(kFIELD_KERNEL_SIZE, &mParams.kernelSize, PluginFieldType::kINT32, 1);
        mDataToSerialize.emplace_back(kFIELD_PADDING, &mParams.padding, PluginFieldType::kINT32, 1);
        mDataToSerialize.emplace_back(kFIELD_STRIDE, &mParams.stride, PluginFieldType::kINT32, 1);
        mDataToSerialize.emplace_back(kFIELD_NUM_HEADS, &mParams.numHeads, PluginFieldType::kINT32, 1);
        mDataToSerialize.emplace_back(kFIELD_SCALE, &mParams.scale, PluginFieldType::kFLOAT32, 1);
        mFCToSerialize.nbFields = static_cast<int32_t>(mDataToSerialize.size());
        mFCToSerialize.fields = mDataToSerialize.data();
        return &mFCToSerialize;
    }
    catch (std::exception const& e)
    {
        logError(std::string{"getFieldsToSerialize failed: "} + e.what());
    }
    catch (...)
    {
        logError("getFieldsToSerialize failed");
    }
    return nullptr;
}

// ---- creator --------------------------------------------------------------------------------------

OutlookAttentionPluginCreator::OutlookAttentionPluginCreator()
{
    mPluginAttributes.emplace_back(kFIELD_KERNEL_SIZE, nullptr, PluginFieldType::kINT32, 1);
    mPluginAttributes.emplace_back(kFIELD_PADDING, nullptr, PluginFieldType::kINT32, 1);
    mPluginAttributes.emplace_back(kFIELD_STRIDE, nullptr, PluginFieldType::kINT32, 1);
    mPluginAttributes.emplace_back(kFIELD_NUM_HEADS, nullptr, PluginFieldType::kINT32, 1);
    mPluginAttributes.emplace_back(kFIELD_SCALE, nullptr, PluginFieldType::kFLOAT32, 1);
    mFC.nbFields = static_cast<int32_t>(mPluginAttributes.size());
    mFC.fields = mPluginAttributes.data();
}

char const* OutlookAttentionPluginCreator::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* OutlookAttentionPluginCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* OutlookAttentionPluginCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

PluginFieldCollection const* OutlookAttentionPluginCreator::getFieldNames() noexcept
{
    return &mFC;
}

IPluginV3* OutlookAttentionPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /* phase */) noexcept
{
    try
    {
        return new OutlookAttentionPlugin(parseFields(fc));
    }
    catch (std::exception const& e)
    {
        logError(std::string{"createPlugin("} + (name != nullptr ? name : "") + ") failed: " + e.what());
    }
    catch (...)
    {
        logError("createPlugin failed");
    }
    return nullptr;
}

} // namespace plugin
} // namespace volo

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 0;
    try
    {
        static volo::plugin::OutlookAttentionPluginCreator sCreator;
        static nvinfer1::IPluginCreatorInterface* const kCREATORS[] = {&sCreator};
        nbCreators = 1;
        return kCREATORS;
    }
    catch (...)
    {
        volo::plugin::logMessage(nvinfer1::ILogger::Severity::kERROR, "volo::OutlookAttention: getCreators failed");
    }
    return nullptr;
}

extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    nvinfer1::ILoggerFinder* expected = nullptr;
    volo::plugin::gLoggerFinder.compare_exchange_strong(expected, finder);
}
