// The backend implements the C API declared once, in the loader's public header.
#pragma once
#include "../../CTorch/include/mlt_torch.h"
