#include "cnifti.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <nifti/nifti2_io.h>

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

/* libnifti reports through stderr; our callers turn failures into typed errors instead. */
static void make_quiet(void) { nifti_set_debug_level(0); }

int cnifti_read_header(const char *path, cnifti_header *out, char *err, size_t errlen) {
    pthread_once(&quiet_once, make_quiet);
    memset(out, 0, sizeof(*out));
    nifti_image *nim = nifti_image_read(path, 0);
    if (nim == NULL) {
        snprintf(err, errlen, "libnifti could not parse the header");
        return -1;
    }
    for (int i = 0; i < 8; i++) {
        out->dim[i] = nim->dim[i];
        out->pixdim[i] = nim->pixdim[i];
    }
    out->datatype = nim->datatype;
    out->nbyper = nim->nbyper;
    out->scl_slope = nim->scl_slope;
    out->scl_inter = nim->scl_inter;
    out->qform_code = nim->qform_code;
    out->sform_code = nim->sform_code;
    out->quatern_b = nim->quatern_b;
    out->quatern_c = nim->quatern_c;
    out->quatern_d = nim->quatern_d;
    out->qoffset_x = nim->qoffset_x;
    out->qoffset_y = nim->qoffset_y;
    out->qoffset_z = nim->qoffset_z;
    out->qfac = nim->qfac;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) out->srow[r * 4 + c] = nim->sto_xyz.m[r][c];
    out->xyz_units = nim->xyz_units;
    out->time_units = nim->time_units;
    out->intent_code = nim->intent_code;
    out->vox_offset = nim->iname_offset;
    out->swapped = nim->byteorder != nifti_short_order();
    memcpy(out->descrip, nim->descrip, 80);
    out->descrip[80] = 0;
    nifti_image_free(nim);
    return 0;
}

int cnifti_encode_header(int version, const int64_t dim[8], int datatype, const double affine[16],
                         int qform_code, int sform_code, int xyz_units, const char *descrip,
                         double scl_slope, double scl_inter, unsigned char *buf, size_t buflen) {
    pthread_once(&quiet_once, make_quiet);
    size_t need = version == 2 ? sizeof(nifti_2_header) : sizeof(nifti_1_header);
    if (buflen < need || dim[0] < 1 || dim[0] > 7) return -1;
    nifti_image *nim = nifti_make_new_nim(dim, datatype, 0);
    if (nim == NULL) return -1;
    nifti_dmat44 a;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) a.m[r][c] = affine[r * 4 + c];
    double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
    nifti_dmat44_to_quatern(a, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
    nim->quatern_b = qb; nim->quatern_c = qc; nim->quatern_d = qd;
    nim->qoffset_x = qx; nim->qoffset_y = qy; nim->qoffset_z = qz;
    nim->qfac = qfac;
    nim->dx = nim->pixdim[1] = dx;
    nim->dy = nim->pixdim[2] = dy;
    nim->dz = nim->pixdim[3] = dz;
    nim->pixdim[0] = qfac;
    nim->qto_xyz = nifti_quatern_to_dmat44(qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac);
    nim->sto_xyz = a;
    nim->qform_code = qform_code;
    nim->sform_code = sform_code;
    nim->xyz_units = xyz_units & 0x07;
    nim->time_units = xyz_units & 0x38;
    nim->scl_slope = scl_slope;
    nim->scl_inter = scl_inter;
    if (descrip != NULL) {
        strncpy(nim->descrip, descrip, 79);
        nim->descrip[79] = 0;
    }
    nim->nifti_type = version == 2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
    nim->iname_offset = (int64_t)need + 4;
    int rc;
    if (version == 2) {
        nifti_2_header h;
        rc = nifti_convert_nim2n2hdr(nim, &h);
        if (rc == 0) memcpy(buf, &h, need);
    } else {
        nifti_1_header h;
        rc = nifti_convert_nim2n1hdr(nim, &h);
        if (rc == 0) memcpy(buf, &h, need);
    }
    nifti_image_free(nim);
    return rc == 0 ? (int)need : -1;
}
