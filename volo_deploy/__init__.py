"""volo_deploy: export, compress, verify and time VOLO on every runtime.

Heavy backends (onnxruntime, openvino, tensorrt) are imported only by the code that
uses them, so ``import volo_deploy`` works with any subset installed.
"""

__version__ = "0.1.0"
