/*
 * Self-test of the OutlookAttention plugin's field handling, run without a GPU and without
 * libnvinfer: only the library entry points (getCreators, setLoggerFinder) and virtual calls.
 * Exit status 0 and a final "ALL OK" line on success.
 */
#include "outlookAttentionPlugin.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

int gFailures = 0;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                               \
            ++gFailures;                                                                                               \
        }                                                                                                              \
    } while (0)

class CountingLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kERROR)
        {
            ++errors;
            last = msg;
        }
    }
    int errors{0};
    std::string last;
};

class Finder : public ILoggerFinder
{
public:
    explicit Finder(ILogger* logger)
        : mLogger(logger)
    {
    }
    ILogger* findLogger() override
    {
        return mLogger;
    }

private:
    ILogger* mLogger;
};

struct Fields
{
    int32_t k{3};
    int32_t pad{1};
    int32_t stride{2};
    int32_t heads{6};
    float scale{0.17677669F};
    std::vector<PluginField> list;
    PluginFieldCollection fc{};

    PluginFieldCollection const* standard()
    {
        list = {PluginField("kernel_size", &k, PluginFieldType::kINT32, 1),
            PluginField("padding", &pad, PluginFieldType::kINT32, 1),
            PluginField("stride", &stride, PluginFieldType::kINT32, 1),
            PluginField("num_heads", &heads, PluginFieldType::kINT32, 1),
            PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1)};
        return finish();
    }
    PluginFieldCollection const* finish()
    {
        fc.nbFields = static_cast<int32_t>(list.size());
        fc.fields = list.data();
        return &fc;
    }
};

int32_t fieldInt(PluginFieldCollection const* fc, char const* name)
{
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        if (std::strcmp(fc->fields[i].name, name) == 0 && fc->fields[i].type == PluginFieldType::kINT32)
        {
            return *static_cast<int32_t const*>(fc->fields[i].data);
        }
    }
    return -12345;
}

float fieldFloat(PluginFieldCollection const* fc, char const* name)
{
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        if (std::strcmp(fc->fields[i].name, name) == 0 && fc->fields[i].type == PluginFieldType::kFLOAT32)
        {
            return *static_cast<float const*>(fc->fields[i].data);
        }
    }
    return std::nanf("");
}

DynamicPluginTensorDesc desc(DataType type, TensorFormat format, std::vector<int64_t> const& dims)
{
    DynamicPluginTensorDesc d{};
    d.desc.type = type;
    d.desc.format = format;
    d.desc.dims.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
    {
        d.desc.dims.d[i] = dims[i];
    }
    d.min = d.desc.dims;
    d.max = d.desc.dims;
    return d;
}

} // namespace

int main()
{
    CountingLogger logger;
    Finder finder(&logger);
    setLoggerFinder(&finder);

    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    CHECK(n == 1 && creators != nullptr);
    if (n != 1 || creators == nullptr)
    {
        return 1;
    }
    CHECK(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    CHECK(std::strcmp(creator->getPluginName(), "OutlookAttention") == 0);
    CHECK(std::strcmp(creator->getPluginVersion(), "1") == 0);
    CHECK(std::strcmp(creator->getPluginNamespace(), "volo") == 0);
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names != nullptr && names->nbFields == 5);

    // Valid fields -> plugin, serialized fields round-trip.
    Fields f;
    IPluginV3* plugin = creator->createPlugin("oa", f.standard(), TensorRTPhase::kBUILD);
    CHECK(plugin != nullptr);
    if (plugin == nullptr)
    {
        return 1;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    CHECK(core != nullptr && build != nullptr && runtime != nullptr);
    CHECK(std::strcmp(core->getPluginName(), "OutlookAttention") == 0);
    CHECK(std::strcmp(core->getPluginNamespace(), "volo") == 0);
    CHECK(build->getNbOutputs() == 1);
    PluginFieldCollection const* ser = runtime->getFieldsToSerialize();
    CHECK(ser != nullptr && ser->nbFields == 5);
    CHECK(fieldInt(ser, "kernel_size") == 3 && fieldInt(ser, "padding") == 1 && fieldInt(ser, "stride") == 2
        && fieldInt(ser, "num_heads") == 6 && fieldFloat(ser, "scale") == f.scale);
    IPluginV3* restored = creator->createPlugin("oa", ser, TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    if (restored != nullptr)
    {
        auto* rt = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        PluginFieldCollection const* ser2 = rt->getFieldsToSerialize();
        CHECK(fieldInt(ser2, "kernel_size") == 3 && fieldInt(ser2, "num_heads") == 6
            && fieldFloat(ser2, "scale") == f.scale);
        delete restored;
    }
    IPluginV3* cloned = plugin->clone();
    CHECK(cloned != nullptr);
    if (cloned != nullptr)
    {
        auto* rt = static_cast<IPluginV3OneRuntime*>(cloned->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        CHECK(fieldInt(rt->getFieldsToSerialize(), "stride") == 2);
        delete cloned;
    }

    // Types and formats.
    DataType outType = DataType::kINT8;
    DataType inTypes[2] = {DataType::kHALF, DataType::kHALF};
    CHECK(build->getOutputDataTypes(&outType, 1, inTypes, 2) == 0 && outType == DataType::kHALF);
    for (DataType t : {DataType::kFLOAT, DataType::kHALF})
    {
        DynamicPluginTensorDesc io[3] = {desc(t, TensorFormat::kLINEAR, {2, 28, 28, 192}),
            desc(t, TensorFormat::kLINEAR, {2, 14, 14, 486}), desc(t, TensorFormat::kLINEAR, {2, 28, 28, 192})};
        CHECK(build->supportsFormatCombination(0, io, 2, 1));
        CHECK(build->supportsFormatCombination(1, io, 2, 1));
        CHECK(build->supportsFormatCombination(2, io, 2, 1));
        CHECK(build->configurePlugin(io, 2, io + 2, 1) == 0);
        io[1].desc.type = t == DataType::kFLOAT ? DataType::kHALF : DataType::kFLOAT;
        CHECK(!build->supportsFormatCombination(1, io, 2, 1));
    }
    {
        DynamicPluginTensorDesc io[3] = {desc(DataType::kINT8, TensorFormat::kLINEAR, {2, 28, 28, 192}),
            desc(DataType::kINT8, TensorFormat::kLINEAR, {2, 14, 14, 486}),
            desc(DataType::kINT8, TensorFormat::kLINEAR, {2, 28, 28, 192})};
        CHECK(!build->supportsFormatCombination(0, io, 2, 1));
        io[0] = desc(DataType::kHALF, TensorFormat::kHWC8, {2, 28, 28, 192});
        CHECK(!build->supportsFormatCombination(0, io, 2, 1));
        CHECK(!build->supportsFormatCombination(3, io, 2, 1));
    }
    // Shape checks: wrong attn channels, wrong grid; dynamic (-1) dims accepted.
    int const errorsBefore = logger.errors;
    {
        DynamicPluginTensorDesc io[3] = {desc(DataType::kHALF, TensorFormat::kLINEAR, {2, 28, 28, 192}),
            desc(DataType::kHALF, TensorFormat::kLINEAR, {2, 14, 14, 485}),
            desc(DataType::kHALF, TensorFormat::kLINEAR, {2, 28, 28, 192})};
        CHECK(build->configurePlugin(io, 2, io + 2, 1) != 0);
        io[1] = desc(DataType::kHALF, TensorFormat::kLINEAR, {2, 13, 14, 486});
        CHECK(build->configurePlugin(io, 2, io + 2, 1) != 0);
        io[1] = desc(DataType::kHALF, TensorFormat::kLINEAR, {2, 14, 14, 486});
        io[0] = desc(DataType::kHALF, TensorFormat::kLINEAR, {2, 27, 27, 190});
        CHECK(build->configurePlugin(io, 2, io + 2, 1) != 0);
        io[0] = desc(DataType::kHALF, TensorFormat::kLINEAR, {-1, 27, -1, 192});
        io[1] = desc(DataType::kHALF, TensorFormat::kLINEAR, {-1, 14, -1, 486});
        CHECK(build->configurePlugin(io, 2, io + 2, 1) == 0);
    }
    CHECK(logger.errors == errorsBefore + 3);
    delete plugin;

    // Optional dispatch attributes and int64 / float64 values are accepted.
    {
        Fields g;
        g.standard();
        char ns[] = "volo";
        char ver[] = "1";
        int64_t heads64 = 8;
        double scale64 = 0.125;
        g.list[3] = PluginField("num_heads", &heads64, PluginFieldType::kINT64, 1);
        g.list[4] = PluginField("scale", &scale64, PluginFieldType::kFLOAT64, 1);
        g.list.emplace_back("plugin_namespace", ns, PluginFieldType::kCHAR, 4);
        g.list.emplace_back("plugin_version", ver, PluginFieldType::kCHAR, 1);
        IPluginV3* p = creator->createPlugin("oa", g.finish(), TensorRTPhase::kBUILD);
        CHECK(p != nullptr);
        if (p != nullptr)
        {
            auto* rt = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
            CHECK(fieldInt(rt->getFieldsToSerialize(), "num_heads") == 8);
            CHECK(fieldFloat(rt->getFieldsToSerialize(), "scale") == 0.125F);
            delete p;
        }
    }

    // Bad fields are rejected (nullptr, logged), never thrown.
    struct Bad
    {
        char const* what;
        void (*edit)(Fields&);
    };
    Bad const bad[] = {
        {"k=0", [](Fields& g) { g.k = 0; }},
        {"k=65", [](Fields& g) { g.k = 65; }},
        {"pad<0", [](Fields& g) { g.pad = -1; }},
        {"stride=0", [](Fields& g) { g.stride = 0; }},
        {"heads=0", [](Fields& g) { g.heads = 0; }},
        {"heads*k^4 overflow", [](Fields& g) { g.k = 64; g.heads = 200; }},
        {"scale nan", [](Fields& g) { g.scale = std::nanf(""); }},
        {"scale inf", [](Fields& g) { g.scale = std::numeric_limits<float>::infinity(); }},
        {"missing field", [](Fields& g) { g.list.pop_back(); }},
        {"wrong type", [](Fields& g) { g.list[0].type = PluginFieldType::kFLOAT32; }},
        {"null data", [](Fields& g) { g.list[1].data = nullptr; }},
        {"unknown field", [](Fields& g) { g.list.emplace_back("dilation", &g.k, PluginFieldType::kINT32, 1); }},
    };
    for (Bad const& b : bad)
    {
        Fields g;
        g.standard();
        b.edit(g);
        int const before = logger.errors;
        IPluginV3* p = creator->createPlugin("bad", g.finish(), TensorRTPhase::kBUILD);
        if (p != nullptr || logger.errors != before + 1)
        {
            std::printf("FAIL: bad fields accepted or not logged: %s\n", b.what);
            ++gFailures;
            delete p;
        }
    }
    CHECK(creator->createPlugin("null", nullptr, TensorRTPhase::kBUILD) == nullptr);

    if (gFailures == 0)
    {
        std::printf("ALL OK\n");
        return 0;
    }
    std::printf("%d failure(s)\n", gFailures);
    return 1;
}
