#ifndef CNIFTI_H
#define CNIFTI_H
#include <nifti/nifti2_io.h>
#endif
