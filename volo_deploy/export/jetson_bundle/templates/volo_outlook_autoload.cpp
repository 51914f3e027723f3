// Registers the volo::OutlookAttention TensorRT plugin as soon as this library is loaded.
//
// trtexec --dynamicPlugins and IPluginRegistry::loadLibrary call the plugin library's getCreators;
// DeepStream (nvinfer custom-lib-path, dlopen) and Triton (LD_PRELOAD) only load a library and
// expect it to register itself. This library does that: its constructor asks TensorRT's registry to
// load libvolo_outlook_plugin.so from the folder this library was loaded from.
// Built by build_engine.sh (needs the TensorRT headers and libnvinfer); written by volo_deploy.
#include "NvInferRuntime.h"

#include <cstdio>
#include <dlfcn.h>
#include <string>

namespace
{

void anchor() {}

struct Autoload
{
    Autoload()
    {
        Dl_info info{};
        if (dladdr(reinterpret_cast<void*>(&anchor), &info) == 0 || info.dli_fname == nullptr)
        {
            std::fprintf(stderr, "volo_outlook_autoload: cannot locate itself (dladdr failed)\n");
            return;
        }
        std::string path{info.dli_fname};
        path = path.substr(0, path.rfind('/') + 1) + "libvolo_outlook_plugin.so";
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        if (registry == nullptr || registry->loadLibrary(path.c_str()) == nullptr)
        {
            std::fprintf(stderr, "volo_outlook_autoload: TensorRT could not load %s\n", path.c_str());
        }
    }
};

Autoload const gAutoload{};

} // namespace
