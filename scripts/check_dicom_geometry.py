#!/usr/bin/env python3
"""Independent check of a DICOM series -> NIfTI conversion (ours: DicomSeries.load + NIfTI.write).

Computes the voxel-to-RAS affine and the voxel values from the DICOM files with pydicom and NumPy arithmetic, as
dicom2nifti does before its optional reorientation (slices sorted by ImagePositionPatient projected on the normal
row x column direction; affine columns: row direction * column spacing, column direction * row spacing,
(last - first position) / (n - 1), first position; LPS -> RAS; voxel (i, j, k) = column i, row j of slice k;
values = stored * RescaleSlope + RescaleIntercept), and compares them with what nibabel reads from the NIfTI.

Usage: check_dicom_geometry.py DICOM_DIR NIFTI [--tolerance 1e-4]
Prints the differences as JSON; exits 1 when the affine or any voxel differs by more than the tolerance, or the
shapes differ.
"""
import argparse
import json
import os
import sys

import nibabel as nib
import numpy as np
import pydicom


def dicom_volume(directory):
    paths = sorted(os.path.join(directory, f) for f in os.listdir(directory))
    slices = [pydicom.dcmread(p) for p in paths if os.path.isfile(p)]
    if not slices:
        raise SystemExit(f"no DICOM files in {directory}")
    iop = np.array(slices[0].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=np.float64), normal)))
    first = np.array(slices[0].ImagePositionPatient, dtype=np.float64)
    last = np.array(slices[-1].ImagePositionPatient, dtype=np.float64)
    n = len(slices)
    step = (last - first) / (n - 1) if n > 1 else normal * float(slices[0].SliceThickness)
    row_spacing, col_spacing = (float(v) for v in slices[0].PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = first
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    planes = []
    for d in slices:
        slope = float(getattr(d, "RescaleSlope", 1) or 1)
        intercept = float(getattr(d, "RescaleIntercept", 0) or 0)
        planes.append(d.pixel_array.astype(np.float64) * slope + intercept)
    # pixel_array is [rows, columns]; voxel i runs along columns.
    volume = np.stack(planes, axis=-1).transpose(1, 0, 2)
    return affine, volume


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dicom_dir")
    parser.add_argument("nifti")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    affine, volume = dicom_volume(args.dicom_dir)
    image = nib.load(args.nifti)
    data = np.asarray(image.dataobj, dtype=np.float64)
    report = {"dicom_shape": list(volume.shape), "nifti_shape": list(data.shape)}
    ok = data.shape == volume.shape
    report["affine_max_abs_diff"] = float(np.abs(image.affine - affine).max())
    ok = ok and report["affine_max_abs_diff"] <= args.tolerance
    if data.shape == volume.shape:
        report["voxel_max_abs_diff"] = float(np.abs(data - volume).max())
        ok = ok and report["voxel_max_abs_diff"] <= args.tolerance
    report["ok"] = bool(ok)
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
