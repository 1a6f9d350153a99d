#include "mlt_torch.h"
#include <torch/torch.h>
extern "C" int mlt_version(void) { return TORCH_VERSION_MAJOR * 100 + TORCH_VERSION_MINOR; }
