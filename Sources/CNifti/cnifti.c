#include "cnifti.h"
