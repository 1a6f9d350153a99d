#!/usr/bin/env python3
"""Independent writer and reader for the DICOMweb real-size tests and bench (pydicom, highdicom, nibabel, numpy).

  write-series OUT_DIR [--cols C --rows R --slices S --seed N]
      Writes a CT series with pydicom, one file per slice: oblique (rotated 20 degrees about z, tilted 10 degrees
      about x), 0.8 x 0.9 mm pixels (columns x rows), 2.5 mm slices, signed int16 stored values with
      RescaleSlope 1 / RescaleIntercept -1024 (air outside the body is stored negative). The body is an ellipsoid
      of soft tissue with a bright sphere ("spleen") and noise. Prints {"series", "study", "files"} as JSON.

  check-seg SEG SOURCE_DIR LABEL_NIFTI
      Decodes SEG with highdicom onto the frames of the source series (by SOP instance, without
      ignore_spatial_locations), maps LABEL_NIFTI onto the same frames by geometry alone (nibabel's affine, the
      slices' ImagePositionPatient / ImageOrientationPatient / PixelSpacing), and prints per label value the Dice
      between the label's voxels and the SEG's segment of the same rank (segments are numbered 1..N by ascending
      label value), with every warning highdicom or pydicom raised. Exit 0 when every Dice is 1.0 and there were
      no warnings.
"""
import argparse
import json
import logging
import os
import sys
import warnings

import numpy as np


def rotation():
    a, t = np.deg2rad(20.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    return rx @ rz


def write_series(args):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    cols, rows, slices = args.cols, args.rows, args.slices
    col_spacing, row_spacing, slice_spacing = 0.8, 0.9, 2.5
    r = rotation()
    row_dir, col_dir = r[:, 0], r[:, 1]
    normal = np.cross(row_dir, col_dir)
    origin = np.array([-100.25, -90.5, -250.0])

    rng = np.random.default_rng(args.seed)
    # Physical coordinates of every voxel relative to the volume centre, in mm, axis order (slice, row, column).
    k = (np.arange(slices) - slices / 2) * slice_spacing
    j = (np.arange(rows) - rows / 2) * row_spacing
    i = (np.arange(cols) - cols / 2) * col_spacing
    kk, jj, ii = np.meshgrid(k, j, i, indexing="ij")
    body = (ii / (cols * col_spacing * 0.45)) ** 2 + (jj / (rows * row_spacing * 0.4)) ** 2 + (kk / (slices * slice_spacing * 0.48)) ** 2 < 1
    spleen = (ii - cols * col_spacing * 0.15) ** 2 + (jj + rows * row_spacing * 0.1) ** 2 + (kk - 10) ** 2 < (min(cols * col_spacing, rows * row_spacing) * 0.18) ** 2
    hu = np.full(kk.shape, -2000, dtype=np.int32)
    hu[body] = 40
    hu[spleen] = 200
    hu += rng.integers(-30, 31, size=hu.shape, dtype=np.int32)
    stored = (hu + 1024).astype(np.int16)

    os.makedirs(args.out, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for s in range(slices):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.Modality = "CT"
        ds.PatientName = "Realsize^Test"
        ds.PatientID = args.patient
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.StudyDate, ds.StudyTime = "20240102", "101500"
        ds.SeriesDate, ds.SeriesTime = "20240102", "101600"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 1, s + 1, 1
        ds.Manufacturer = "pydicom"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        ds.ImageOrientationPatient = [f"{v:.10f}" for v in list(row_dir) + list(col_dir)]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + s * slice_spacing * normal]
        ds.PixelSpacing = [f"{row_spacing}", f"{col_spacing}"]
        ds.SliceThickness = f"{slice_spacing}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.PixelData = np.ascontiguousarray(stored[s]).tobytes()
        path = os.path.join(args.out, f"slice-{s:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    print(json.dumps({"series": series, "study": study, "files": files}))
    return 0


def check_seg(args):
    import highdicom as hd
    import nibabel as nib
    import pydicom

    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                messages.append(f"{record.name}: {record.getMessage()}")

    logging.getLogger().addHandler(Collect())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sources = [pydicom.dcmread(os.path.join(args.source, f)) for f in sorted(os.listdir(args.source))]
        seg = hd.seg.segread(args.seg)
        uids = [str(s.SOPInstanceUID) for s in sources]
        # (instances, rows, columns, segments), one binary plane per segment, placed by the frames' source SOP
        # instances (no geometry is trusted here); slices without any segment have no frame and read as zeros.
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, combine_segments=False, assert_missing_frames_are_empty=True)
        numbers = [int(n) for n in seg.segment_numbers]
        overlap = str(getattr(seg, "SegmentsOverlap", "missing"))
    messages += [f"{w.category.__name__}: {w.message}" for w in caught]

    image = nib.load(args.label)
    label = np.asarray(image.dataobj)
    inverse = np.linalg.inv(image.affine)
    expected = np.zeros((len(sources), sources[0].Rows, sources[0].Columns), dtype=label.dtype)
    worst = 0.0
    for n, s in enumerate(sources):
        iop = np.array(s.ImageOrientationPatient, dtype=np.float64)
        ipp = np.array(s.ImagePositionPatient, dtype=np.float64)
        dr, dc = (float(v) for v in s.PixelSpacing)
        r, c = np.meshgrid(np.arange(s.Rows), np.arange(s.Columns), indexing="ij")
        lps = ipp[None, None, :] + c[..., None] * dc * iop[None, None, :3] + r[..., None] * dr * iop[None, None, 3:]
        ras = np.concatenate([-lps[..., :2], lps[..., 2:], np.ones(lps.shape[:2] + (1,))], axis=-1)
        ijk = ras @ inverse.T
        rounded = np.rint(ijk[..., :3])
        worst = max(worst, float(np.abs(ijk[..., :3] - rounded).max()))
        idx = rounded.astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.array(label.shape[:3])), axis=-1)
        plane = np.zeros((s.Rows, s.Columns), dtype=label.dtype)
        plane[inside] = label[idx[inside][:, 0], idx[inside][:, 1], idx[inside][:, 2]]
        expected[n] = plane

    values = sorted(int(v) for v in np.unique(expected) if v != 0)
    dice = {}
    for rank, value in enumerate(values):
        want = expected == value
        got = pixels[..., numbers.index(rank + 1)] > 0 if rank + 1 in numbers else np.zeros_like(want)
        total = int(want.sum()) + int(got.sum())
        dice[str(value)] = 1.0 if total == 0 else 2.0 * int((want & got).sum()) / total
    report = {
        "dice": dice,
        "segments": numbers,
        "segment_labels": [str(d.SegmentLabel) for d in seg.SegmentSequence],
        "segments_overlap": overlap,
        "frames": int(seg.NumberOfFrames),
        "voxels": {str(v): int((expected == v).sum()) for v in values},
        "grid_misalignment_voxels": worst,
        "warnings": messages,
    }
    report["ok"] = bool(values) and all(d == 1.0 for d in dice.values()) and len(numbers) == len(values) and not messages
    print(json.dumps(report))
    return 0 if report["ok"] else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write-series")
    w.add_argument("out")
    w.add_argument("--cols", type=int, default=256)
    w.add_argument("--rows", type=int, default=256)
    w.add_argument("--slices", type=int, default=200)
    w.add_argument("--seed", type=int, default=7)
    w.add_argument("--patient", default="REALSIZE")
    c = sub.add_parser("check-seg")
    c.add_argument("seg")
    c.add_argument("source")
    c.add_argument("label")
    args = p.parse_args()
    return write_series(args) if args.command == "write-series" else check_seg(args)


if __name__ == "__main__":
    sys.exit(main())
