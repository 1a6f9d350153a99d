#ifndef MLT_TORCH_H
#define MLT_TORCH_H
/* Plain C API over libtorch. Every entry point returns an mlt_status and never lets a C++ exception out. */
#ifdef __cplusplus
extern "C" {
#endif
int mlt_version(void);
#ifdef __cplusplus
}
#endif
#endif
