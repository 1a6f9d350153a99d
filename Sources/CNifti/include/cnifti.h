#ifndef CNIFTI_H
#define CNIFTI_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* Plain-C view of a NIfTI-1/2 header as libnifti2 parsed it (byte order already fixed, NIfTI-1 widened). */
typedef struct {
    int64_t dim[8];
    double pixdim[8];
    int datatype;
    int nbyper;
    double scl_slope, scl_inter;
    int qform_code, sform_code;
    double quatern_b, quatern_c, quatern_d;
    double qoffset_x, qoffset_y, qoffset_z;
    double qfac;
    double srow[12];        /* sform rows x, y, z */
    int xyz_units, time_units;
    int intent_code;
    int64_t vox_offset;
    int swapped;            /* 1 when the file's byte order differs from this machine's */
    char descrip[81];
} cnifti_header;

/* Reads the header of a single-file NIfTI (.nii or .nii.gz) without its voxels. Returns 0 on success; on failure
   writes a message into err (errlen bytes). */
int cnifti_read_header(const char *path, cnifti_header *out, char *err, size_t errlen);

/* Encodes a single-file NIfTI header (version 1: 348 bytes, version 2: 540 bytes) for the dims, pixdim[0..7] is
   ignored except units; the qform is derived from the 4x4 row-major affine (quaternion, pixdim and qfac), the
   sform is the affine itself. Returns the header size, or -1 when buflen is too small or the input is invalid. */
int cnifti_encode_header(int version, const int64_t dim[8], int datatype, const double affine[16],
                         int qform_code, int sform_code, int xyz_units, const char *descrip,
                         double scl_slope, double scl_inter, unsigned char *buf, size_t buflen);

#endif
