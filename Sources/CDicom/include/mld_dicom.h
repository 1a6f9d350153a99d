#ifndef MLD_DICOM_H
#define MLD_DICOM_H

/* A plain C API over DCMTK (dcmdata, its JPEG / JPEG-LS / RLE codecs and dcmseg).
 *
 * Conventions: every function returns an mld_status; on MLD_ERROR it stores a message in *err (when err is not
 * NULL) that the caller frees with mld_string_free. No C++ exception crosses this boundary. Every handle that a
 * function creates is freed with the matching *_free function. Handles are not thread-safe: use one from one
 * thread at a time (different handles may be used concurrently).
 *
 * Attribute paths use DCMTK's path syntax: a tag "(0020,0032)" or a keyword "ImagePositionPatient", items of
 * sequences by index: "PerFrameFunctionalGroupsSequence[3].PlanePositionSequence[0].ImagePositionPatient". */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MLD_OK = 0,
    /* The attribute (or a sequence item on its path) is absent. */
    MLD_NOT_FOUND = 1,
    MLD_ERROR = 2,
} mld_status;

/* Transfer syntaxes for mld_file_save. */
typedef enum {
    MLD_XFER_EXPLICIT_LITTLE = 0,
    MLD_XFER_IMPLICIT_LITTLE = 1,
    MLD_XFER_RLE = 2,
    MLD_XFER_JPEG_LS_LOSSLESS = 3,
    MLD_XFER_JPEG_LOSSLESS = 4,
} mld_transfer_syntax;

typedef struct mld_file mld_file;
typedef struct mld_seg mld_seg;

void mld_string_free(char *s);

/* A new UID under DCMTK's root (dcmGenerateUniqueIdentifier). */
mld_status mld_generate_uid(char **uid, char **err);

/* ---- datasets (a DICOM Part-10 file or a bare dataset) ---- */

/* Reads a file (Part-10 with meta header, or a bare dataset). */
mld_status mld_file_open(const char *path, mld_file **out, char **err);
/* Parses a file held in memory. */
mld_status mld_file_parse(const uint8_t *bytes, size_t length, mld_file **out, char **err);
/* An empty dataset, to be filled with mld_file_put_string / mld_file_put_pixels and saved. */
mld_status mld_file_create(mld_file **out, char **err);
void mld_file_free(mld_file *file);

/* The value of the attribute at path, all values joined by backslashes (numbers in their DICOM string form). */
mld_status mld_file_get_string(mld_file *file, const char *path, char **value, char **err);
/* The number of items of the sequence at path. */
mld_status mld_file_count_items(mld_file *file, const char *path, size_t *count, char **err);
/* The value at path (as mld_file_get_string) inside every item of the sequence at sequence_path, in one linear
   pass over the items: the items' values joined by 0x1E, an item without the value giving 0x1F; count = items. */
mld_status mld_file_get_item_strings(mld_file *file, const char *sequence_path, const char *path, char **values,
                                     size_t *count, char **err);
/* Removes the pixel data (and its decompressed copy), freeing their memory once they have been read. */
void mld_file_drop_pixels(mld_file *file);
/* Sets the attribute at path (creating sequence items on the way) from its DICOM string form. */
mld_status mld_file_put_string(mld_file *file, const char *path, const char *value, char **err);
/* The transfer syntax UID the dataset was read in ("" for a created one). */
mld_status mld_file_transfer_syntax(mld_file *file, char **uid, char **err);

/* Decompresses the pixel data when needed (JPEG, JPEG-LS, RLE) and returns the native pixel bytes in this
 * machine's byte order: *data stays owned by the handle and is valid until the next call on it or its free. */
mld_status mld_file_pixels(mld_file *file, const uint8_t **data, size_t *length, char **err);
/* Stores uncompressed pixel data: 8-bit samples as OB, 16-bit samples (native byte order) as OW. */
mld_status mld_file_put_pixels(mld_file *file, const void *data, size_t length, int bits_allocated, char **err);
/* Writes a Part-10 file (with meta header) in the given transfer syntax, compressing when it is RLE or JPEG. */
mld_status mld_file_save(mld_file *file, const char *path, mld_transfer_syntax xfer, char **err);

/* ---- DICOM SEG (binary segmentation, dcmseg) ---- */

/* Where a SEG's descriptive text comes from. */
typedef struct {
    const char *manufacturer;
    const char *model_name;
    const char *software_versions;
    const char *device_serial_number;
    const char *series_description;
    const char *series_number;
    const char *content_label;       /* Code String: upper case, at most 16 characters */
    const char *content_description;
    const char *content_creator;     /* Person Name */
} mld_seg_description;

/* A binary SEG of rows x columns frames. Patient, study and frame of reference are imported from source (an
 * image of the segmented series); the SEG gets its own new series. Pixel measures and plane orientation are
 * shared by all frames: pixel_spacing = (row spacing, column spacing) as in PixelSpacing, iop as in
 * ImageOrientationPatient. */
mld_status mld_seg_create(uint16_t rows, uint16_t columns, const mld_seg_description *description,
                          mld_file *source, const double iop[6], const double pixel_spacing[2],
                          double slice_thickness, mld_seg **out, char **err);
void mld_seg_free(mld_seg *seg);

/* Adds a segment (category SCT 123037004 "Anatomical Structure", type SCT 85756007 "Tissue", algorithm
 * AUTOMATIC named algorithm_name) with a recommended display colour (sRGB 0-255). Returns its number. */
mld_status mld_seg_add_segment(mld_seg *seg, const char *label, const uint8_t rgb[3], const char *algorithm_name,
                               uint16_t *segment_number, char **err);

/* Adds a frame of segment_number: mask has rows*columns bytes (row-major, non-zero = inside), ipp is the
 * ImagePositionPatient of its top-left pixel, position_index its 1-based index along the slice normal (the
 * second dimension index), source the image it was derived from (referenced through the Derivation Image
 * functional group and the Referenced Series Sequence). */
mld_status mld_seg_add_frame(mld_seg *seg, uint16_t segment_number, const uint8_t *mask, const double ipp[3],
                             uint32_t position_index, mld_file *source, char **err);

/* Writes the SEG (explicit VR little endian). */
mld_status mld_seg_save(mld_seg *seg, const char *path, char **err);

/* ---- colours ---- */

/* sRGB (0-255) to the DICOM-scaled CIELab of RecommendedDisplayCIELabValue, and back. */
void mld_rgb_to_dicom_lab(const uint8_t rgb[3], uint16_t lab[3]);
void mld_dicom_lab_to_rgb(const uint16_t lab[3], uint8_t rgb[3]);

#ifdef __cplusplus
}
#endif

#endif
