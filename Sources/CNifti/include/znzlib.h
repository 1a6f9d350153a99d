/* nifti2_io.h includes <znzlib.h> without Debian's nifti/ prefix. */
#include <nifti/znzlib.h>
