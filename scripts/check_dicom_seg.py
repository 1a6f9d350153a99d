#!/usr/bin/env python3
"""Independent check of a DICOM SEG written by DicomSeg.write.

Decodes the SEG with pydicom, places every frame on the grid of its source series (slices sorted by
ImagePositionPatient along the normal, as check_dicom_geometry.py does) by the frame's own ImagePositionPatient,
with value = its ReferencedSegmentNumber, and compares the result with a label NIfTI read by nibabel (voxel
(i, j, k) = column i, row j of slice k). Also checks the SEG references the source series.

Usage: check_dicom_seg.py SEG DICOM_DIR LABEL_NIFTI
Prints a JSON report; exits 1 when any voxel differs or the references are wrong.
"""
import json
import os
import sys

import nibabel as nib
import numpy as np
import pydicom


def main():
    seg_path, dicom_dir, label_path = sys.argv[1:4]
    slices = [pydicom.dcmread(os.path.join(dicom_dir, f)) for f in sorted(os.listdir(dicom_dir))]
    iop = np.array(slices[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    along = sorted(float(np.dot(np.array(s.ImagePositionPatient, dtype=np.float64), normal)) for s in slices)

    seg = pydicom.dcmread(seg_path)
    frames = seg.pixel_array.reshape(int(getattr(seg, "NumberOfFrames", 1)), seg.Rows, seg.Columns)
    label = np.zeros((seg.Columns, seg.Rows, len(slices)), dtype=np.int32)
    placed = []
    for f, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        ipp = np.array(group.PlanePositionSequence[0].ImagePositionPatient, dtype=np.float64)
        k = int(np.argmin([abs(a - float(np.dot(ipp, normal))) for a in along]))
        placed.append((number, f, k))
    for number, f, k in sorted(placed):
        label[:, :, k][frames[f].T > 0] = number

    expected = np.asarray(nib.load(label_path).dataobj).astype(np.int32)
    report = {
        "frames": len(placed),
        "segments": [str(s.SegmentLabel) for s in seg.SegmentSequence],
        "referenced_series": str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID),
        "source_series": str(slices[0].SeriesInstanceUID),
        "same_study": str(seg.StudyInstanceUID) == str(slices[0].StudyInstanceUID),
        "differing_voxels": int((label != expected).sum()) if label.shape == expected.shape else -1,
    }
    ok = (report["differing_voxels"] == 0 and report["same_study"]
          and report["referenced_series"] == report["source_series"])
    report["ok"] = bool(ok)
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
