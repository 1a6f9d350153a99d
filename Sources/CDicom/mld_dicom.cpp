// The C API of mld_dicom.h over DCMTK. One translation unit: DCMTK headers are cheap next to libtorch's, and the
// build machines have two cores.

#include "mld_dicom.h"

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcrleerg.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmfg/fgderimg.h"
#include "dcmtk/dcmfg/fgfracon.h"
#include "dcmtk/dcmfg/fgpixmsr.h"
#include "dcmtk/dcmfg/fgplanor.h"
#include "dcmtk/dcmfg/fgplanpo.h"
#include "dcmtk/dcmiod/cielabutil.h"
#include "dcmtk/dcmiod/iodmacro.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpeg/djencode.h"
#include "dcmtk/dcmjpeg/djrplol.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/dcmjpls/djencode.h"
#include "dcmtk/dcmjpls/djrparam.h"
#include "dcmtk/dcmseg/segdoc.h"
#include "dcmtk/dcmseg/segment.h"
#include "dcmtk/oflog/oflog.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <string>
#include <vector>

struct mld_file {
    DcmFileFormat format;
};

struct mld_seg {
    DcmSegmentation *doc = nullptr;
    std::set<std::string> referencedInstances;
    IODSeriesAndInstanceReferenceMacro::ReferencedSeriesItem *refSeries = nullptr;
    size_t pixelsPerFrame = 0;
    ~mld_seg() {
        delete refSeries;
        delete doc;
    }
};

namespace {

char *copyString(const std::string &s) {
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p) std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

mld_status fail(char **err, const std::string &message) {
    if (err) *err = copyString(message);
    return MLD_ERROR;
}

mld_status failCondition(char **err, const std::string &what, const OFCondition &c) {
    return fail(err, what + ": " + c.text());
}

// Codecs are registered once per process; DCMTK's own logging (warnings on stderr for every odd file) is silenced
// because every failure reaches the caller as a status and message.
void setUp() {
    static std::once_flag once;
    std::call_once(once, [] {
        OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
        DJDecoderRegistration::registerCodecs();
        DJEncoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
        DJLSEncoderRegistration::registerCodecs();
        DcmRLEDecoderRegistration::registerCodecs();
        DcmRLEEncoderRegistration::registerCodecs();
    });
}

template <typename F> mld_status guarded(char **err, F body) {
    try {
        setUp();
        return body();
    } catch (const std::exception &e) {
        return fail(err, std::string("DCMTK raised: ") + e.what());
    } catch (...) {
        return fail(err, "DCMTK raised an unknown exception");
    }
}

// DCMTK looks keywords up by a linear scan of its dictionary (about 0.3 ms each): cache them.
bool lookupTag(const std::string &name, DcmTag &tag) {
    static std::mutex mutex;
    static std::unordered_map<std::string, DcmTag> cache;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(name);
    if (it != cache.end()) {
        tag = it->second;
        return true;
    }
    std::string key = name;
    if (key.size() > 2 && key.front() == '(' && key.back() == ')') key = key.substr(1, key.size() - 2);
    if (DcmTag::findTagFromName(key.c_str(), tag).bad()) return false;
    cache.emplace(name, tag);
    return true;
}

struct PathStep {
    DcmTag tag;
    long item; // -1: no index (the attribute itself)
};

// Parses "Keyword[2].(0020,0032)" into steps; every step but the last must index an item.
mld_status parsePath(const char *path, std::vector<PathStep> &steps, char **err) {
    if (!path || !*path) return fail(err, "empty attribute path");
    std::string p(path);
    size_t start = 0;
    while (start <= p.size()) {
        size_t dot = p.find('.', start);
        std::string part = p.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        PathStep step{DcmTag(), -1};
        size_t bracket = part.find('[');
        if (bracket != std::string::npos) {
            if (part.back() != ']') return fail(err, std::string("malformed attribute path ") + path);
            std::string digits = part.substr(bracket + 1, part.size() - bracket - 2);
            if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
                return fail(err, std::string("malformed item index in ") + path);
            step.item = std::stol(digits);
            part = part.substr(0, bracket);
        }
        if (!lookupTag(part, step.tag)) return fail(err, "unknown attribute " + part + " in " + path);
        steps.push_back(step);
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    for (size_t i = 0; i + 1 < steps.size(); ++i)
        if (steps[i].item < 0) return fail(err, std::string("a sequence on the path needs an item index: ") + path);
    return MLD_OK;
}

// Walks to the item holding the path's last attribute; MLD_NOT_FOUND when a sequence or item is absent.
mld_status walk(DcmItem *root, const std::vector<PathStep> &steps, bool create, DcmItem *&holder, char **err) {
    DcmItem *current = root;
    for (size_t i = 0; i + 1 < steps.size(); ++i) {
        DcmItem *next = nullptr;
        OFCondition c = create ? current->findOrCreateSequenceItem(steps[i].tag, next, steps[i].item)
                               : current->findAndGetSequenceItem(steps[i].tag, next, steps[i].item);
        if (c.bad() || !next) {
            if (!create) return MLD_NOT_FOUND;
            return failCondition(err, std::string("creating ") + DcmTag(steps[i].tag).getTagName(), c);
        }
        current = next;
    }
    holder = current;
    return MLD_OK;
}

// The existing element at `path`, whose last step must name an attribute (`notItem` says what it must be);
// MLD_NOT_FOUND when it or an item on the way is absent.
mld_status findElement(mld_file *file, const char *path, const char *notItem, DcmElement *&element, char **err) {
    std::vector<PathStep> steps;
    DcmItem *holder = nullptr;
    mld_status s = parsePath(path, steps, err);
    if (s == MLD_OK) s = walk(file->format.getDataset(), steps, false, holder, err);
    if (s != MLD_OK) return s;
    if (steps.back().item >= 0) return fail(err, std::string(path) + " names a sequence item, not " + notItem);
    element = nullptr;
    if (holder->findAndGetElement(steps.back().tag, element).bad() || !element) return MLD_NOT_FOUND;
    return MLD_OK;
}

std::string formatDouble(double v) {
    // Decimal String holds at most 16 characters.
    char buf[32];
    for (int precision = 10; precision > 0; --precision) {
        std::snprintf(buf, sizeof buf, "%.*g", precision, v);
        if (std::strlen(buf) <= 16) break;
    }
    return buf;
}

E_TransferSyntax toXfer(mld_transfer_syntax x) {
    switch (x) {
    case MLD_XFER_EXPLICIT_LITTLE: return EXS_LittleEndianExplicit;
    case MLD_XFER_IMPLICIT_LITTLE: return EXS_LittleEndianImplicit;
    case MLD_XFER_RLE: return EXS_RLELossless;
    case MLD_XFER_JPEG_LS_LOSSLESS: return EXS_JPEGLSLossless;
    case MLD_XFER_JPEG_LOSSLESS: return EXS_JPEGProcess14SV1;
    }
    return EXS_Unknown;
}

CodeSequenceMacro code(const char *value, const char *scheme, const char *meaning) {
    return CodeSequenceMacro(value, scheme, meaning);
}

} // namespace

extern "C" {

void mld_string_free(char *s) { std::free(s); }

mld_status mld_generate_uid(char **uid, char **err) {
    return guarded(err, [&] {
        char buf[100];
        dcmGenerateUniqueIdentifier(buf, SITE_INSTANCE_UID_ROOT);
        *uid = copyString(buf);
        return MLD_OK;
    });
}

mld_status mld_file_open(const char *path, mld_file **out, char **err) {
    return guarded(err, [&] {
        std::unique_ptr<mld_file> f(new mld_file);
        OFCondition c = f->format.loadFile(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
        if (c.bad()) return failCondition(err, std::string(path) + ": not a readable DICOM file", c);
        *out = f.release();
        return MLD_OK;
    });
}

mld_status mld_file_parse(const uint8_t *bytes, size_t length, mld_file **out, char **err) {
    return guarded(err, [&] {
        std::unique_ptr<mld_file> f(new mld_file);
        DcmInputBufferStream stream;
        stream.setBuffer(bytes, static_cast<offile_off_t>(length));
        stream.setEos();
        f->format.transferInit();
        OFCondition c = f->format.read(stream, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
        f->format.transferEnd();
        if (c.bad()) return failCondition(err, "not a readable DICOM file", c);
        *out = f.release();
        return MLD_OK;
    });
}

mld_status mld_file_create(mld_file **out, char **err) {
    return guarded(err, [&] {
        *out = new mld_file;
        return MLD_OK;
    });
}

void mld_file_free(mld_file *file) { delete file; }

mld_status mld_file_get_string(mld_file *file, const char *path, char **value, char **err) {
    return guarded(err, [&] {
        DcmElement *element = nullptr;
        mld_status s = findElement(file, path, "a value", element, err);
        if (s != MLD_OK) return s;
        if (!element->isLeaf()) return fail(err, std::string(path) + " is a sequence, not a value");
        OFString text;
        OFCondition c = element->getOFStringArray(text);
        if (c.bad()) return failCondition(err, std::string("reading ") + path, c);
        *value = copyString(text.c_str());
        return MLD_OK;
    });
}

mld_status mld_file_count_items(mld_file *file, const char *path, size_t *count, char **err) {
    return guarded(err, [&] {
        DcmElement *element = nullptr;
        mld_status s = findElement(file, path, "a sequence", element, err);
        if (s != MLD_OK) return s;
        if (element->ident() != EVR_SQ) return fail(err, std::string(path) + " is not a sequence");
        *count = static_cast<DcmSequenceOfItems *>(element)->card();
        return MLD_OK;
    });
}

mld_status mld_file_get_item_strings(mld_file *file, const char *sequence_path, const char *path, char **values,
                                     size_t *count, char **err) {
    return guarded(err, [&] {
        DcmElement *element = nullptr;
        mld_status s = findElement(file, sequence_path, "a sequence", element, err);
        if (s != MLD_OK) return s;
        if (element->ident() != EVR_SQ) return fail(err, std::string(sequence_path) + " is not a sequence");
        auto *sequence = static_cast<DcmSequenceOfItems *>(element);
        std::vector<PathStep> steps;
        s = parsePath(path, steps, err);
        if (s != MLD_OK) return s;
        if (steps.back().item >= 0) return fail(err, std::string(path) + " names a sequence item, not a value");
        std::string out;
        size_t n = 0;
        // nextInContainer from the previous item is O(1); getItem(i) would walk the list from its start each time.
        for (DcmObject *o = sequence->nextInContainer(nullptr); o; o = sequence->nextInContainer(o)) {
            if (n++ > 0) out += '\x1e';
            DcmItem *holder = nullptr;
            DcmElement *value = nullptr;
            OFString text;
            if (walk(static_cast<DcmItem *>(o), steps, false, holder, err) == MLD_OK
                && holder->findAndGetElement(steps.back().tag, value).good() && value && value->isLeaf()
                && value->getOFStringArray(text).good()) {
                out += text.c_str();
            } else {
                out += '\x1f';
            }
        }
        *values = copyString(out.c_str());
        *count = n;
        return MLD_OK;
    });
}

mld_status mld_file_put_string(mld_file *file, const char *path, const char *value, char **err) {
    return guarded(err, [&] {
        std::vector<PathStep> steps;
        DcmItem *holder = nullptr;
        mld_status s = parsePath(path, steps, err);
        if (s == MLD_OK) s = walk(file->format.getDataset(), steps, true, holder, err);
        if (s != MLD_OK) return s == MLD_NOT_FOUND ? fail(err, std::string("cannot create ") + path) : s;
        if (steps.back().item >= 0) return fail(err, std::string(path) + " names a sequence item, not a value");
        if (steps.back().tag.getEVR() == EVR_SQ) return fail(err, std::string(path) + " is a sequence, not a value");
        OFCondition c = holder->putAndInsertString(steps.back().tag, value);
        if (c.bad()) return failCondition(err, std::string("setting ") + path, c);
        return MLD_OK;
    });
}

mld_status mld_file_transfer_syntax(mld_file *file, char **uid, char **err) {
    return guarded(err, [&] {
        DcmXfer xfer(file->format.getDataset()->getOriginalXfer());
        *uid = copyString(xfer.getXferID());
        return MLD_OK;
    });
}

void mld_file_drop_pixels(mld_file *file) {
    try {
        file->format.getDataset()->findAndDeleteElement(DCM_PixelData);
    } catch (...) {
    }
}

mld_status mld_file_pixels(mld_file *file, const uint8_t **data, size_t *length, char **err) {
    return guarded(err, [&] {
        DcmDataset *ds = file->format.getDataset();
        DcmElement *element = nullptr;
        if (ds->findAndGetElement(DCM_PixelData, element).bad() || !element) return MLD_NOT_FOUND;
        DcmXfer original(ds->getOriginalXfer());
        if (original.isEncapsulated()) {
            OFCondition c = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
            if (c.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit))
                return fail(err, std::string("cannot decompress pixel data in transfer syntax ") + original.getXferName() +
                                     (c.bad() ? std::string(": ") + c.text() : std::string()));
        }
        // Reading the value first: it loads lazily from the file and may be the freshly decompressed one.
        const uint8_t *bytes = nullptr;
        OFCondition c;
        if (element->getVR() == EVR_OW) {
            Uint16 *words = nullptr;
            c = element->getUint16Array(words);
            bytes = reinterpret_cast<const uint8_t *>(words);
        } else {
            Uint8 *raw = nullptr;
            c = element->getUint8Array(raw);
            bytes = raw;
        }
        if (c.bad()) return failCondition(err, "reading pixel data", c);
        Uint32 size = element->getLength();
        if (!bytes && size > 0) return fail(err, "reading pixel data: no value");
        *data = bytes;
        *length = size;
        return MLD_OK;
    });
}

mld_status mld_file_put_pixels(mld_file *file, const void *data, size_t length, int bits_allocated, char **err) {
    return guarded(err, [&] {
        DcmDataset *ds = file->format.getDataset();
        OFCondition c;
        if (bits_allocated == 16) {
            if (length % 2) return fail(err, "16-bit pixel data must have an even length");
            c = ds->putAndInsertUint16Array(DCM_PixelData, static_cast<const Uint16 *>(data),
                                            static_cast<unsigned long>(length / 2));
        } else if (bits_allocated == 8) {
            c = ds->putAndInsertUint8Array(DCM_PixelData, static_cast<const Uint8 *>(data),
                                           static_cast<unsigned long>(length));
        } else {
            return fail(err, "bits_allocated must be 8 or 16");
        }
        if (c.bad()) return failCondition(err, "storing pixel data", c);
        return MLD_OK;
    });
}

mld_status mld_file_save(mld_file *file, const char *path, mld_transfer_syntax xfer, char **err) {
    return guarded(err, [&] {
        E_TransferSyntax ts = toXfer(xfer);
        if (ts == EXS_Unknown) return fail(err, "unknown transfer syntax");
        DcmDataset *ds = file->format.getDataset();
        DcmXfer target(ts);
        if (target.isEncapsulated()) {
            OFCondition c;
            if (ts == EXS_JPEGLSLossless) {
                DJLSRepresentationParameter params(2, OFTrue);
                c = ds->chooseRepresentation(ts, &params);
            } else if (ts == EXS_JPEGProcess14SV1) {
                DJ_RPLossless params;
                c = ds->chooseRepresentation(ts, &params);
            } else {
                c = ds->chooseRepresentation(ts, nullptr);
            }
            if (c.bad() || !ds->canWriteXfer(ts))
                return fail(err, std::string("cannot encode pixel data as ") + target.getXferName() +
                                     (c.bad() ? std::string(": ") + c.text() : std::string()));
        } else {
            ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
        }
        OFCondition c = file->format.saveFile(path, ts, EET_ExplicitLength, EGL_recalcGL, EPD_withoutPadding);
        if (c.bad()) return failCondition(err, std::string("writing ") + path, c);
        return MLD_OK;
    });
}

mld_status mld_seg_create(uint16_t rows, uint16_t columns, const mld_seg_description *d, mld_file *source,
                          const double iop[6], const double pixel_spacing[2], double slice_thickness, mld_seg **out,
                          char **err) {
    return guarded(err, [&] {
        std::unique_ptr<mld_seg> seg(new mld_seg);
        seg->pixelsPerFrame = static_cast<size_t>(rows) * columns;
        IODGeneralEquipmentModule::EquipmentInfo equipment(d->manufacturer, d->model_name, d->device_serial_number,
                                                           d->software_versions);
        ContentIdentificationMacro ident("1", d->content_label, d->content_description, d->content_creator);
        OFCondition c = DcmSegmentation::createBinarySegmentation(seg->doc, rows, columns, equipment, ident);
        if (c.bad() || !seg->doc) return failCondition(err, "creating the segmentation", c);
        DcmDataset *src = source->format.getDataset();
        c = seg->doc->importHierarchy(*src, OFTrue, OFTrue, OFTrue, OFFalse);
        if (c.bad()) return failCondition(err, "importing patient and study from the source image", c);
        OFString foR;
        if (seg->doc->getFrameOfReference().getFrameOfReferenceUID(foR).bad() || foR.empty()) {
            char uid[100];
            dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
            seg->doc->getFrameOfReference().setFrameOfReferenceUID(uid);
        }
        OFString seriesUID;
        if (src->findAndGetOFString(DCM_SeriesInstanceUID, seriesUID).bad() || seriesUID.empty())
            return fail(err, "the source image has no SeriesInstanceUID");
        seg->refSeries = new IODSeriesAndInstanceReferenceMacro::ReferencedSeriesItem;
        seg->refSeries->setSeriesInstanceUID(seriesUID);

        c = seg->doc->getSeries().setSeriesDescription(d->series_description);
        if (c.good()) c = seg->doc->getSeries().setSeriesNumber(d->series_number);
        if (c.bad()) return failCondition(err, "setting the series description", c);

        // Frames are indexed by segment, then by position in the source series.
        char dimUID[100];
        dcmGenerateUniqueIdentifier(dimUID, SITE_INSTANCE_UID_ROOT);
        IODMultiframeDimensionModule &dims = seg->doc->getDimensions();
        c = dims.addDimensionIndex(DCM_ReferencedSegmentNumber, dimUID, DCM_SegmentIdentificationSequence,
                                   "ReferencedSegmentNumber");
        if (c.good())
            c = dims.addDimensionIndex(DCM_ImagePositionPatient, dimUID, DCM_PlanePositionSequence,
                                       "ImagePositionPatient");
        if (c.bad()) return failCondition(err, "adding dimension indices", c);

        std::unique_ptr<FGPlaneOrientationPatient> orientation(FGPlaneOrientationPatient::createMinimal(
            formatDouble(iop[0]).c_str(), formatDouble(iop[1]).c_str(), formatDouble(iop[2]).c_str(),
            formatDouble(iop[3]).c_str(), formatDouble(iop[4]).c_str(), formatDouble(iop[5]).c_str()));
        if (!orientation) return fail(err, "invalid image orientation");
        c = seg->doc->addForAllFrames(*orientation);
        if (c.bad()) return failCondition(err, "adding the plane orientation", c);

        FGPixelMeasures measures;
        c = measures.setPixelSpacing((formatDouble(pixel_spacing[0]) + "\\" + formatDouble(pixel_spacing[1])).c_str());
        if (c.good()) c = measures.setSliceThickness(formatDouble(slice_thickness).c_str());
        if (c.good()) c = measures.setSpacingBetweenSlices(formatDouble(slice_thickness).c_str());
        if (c.good()) c = seg->doc->addForAllFrames(measures);
        if (c.bad()) return failCondition(err, "adding the pixel measures", c);
        *out = seg.release();
        return MLD_OK;
    });
}

void mld_seg_free(mld_seg *seg) { delete seg; }

mld_status mld_seg_add_segment(mld_seg *seg, const char *label, const uint8_t rgb[3], const char *algorithm_name,
                               uint16_t *segment_number, char **err) {
    return guarded(err, [&] {
        DcmSegment *segment = nullptr;
        OFCondition c = DcmSegment::create(segment, label, code("123037004", "SCT", "Anatomical Structure"),
                                           code("85756007", "SCT", "Tissue"), DcmSegTypes::SAT_AUTOMATIC,
                                           algorithm_name);
        if (c.bad() || !segment) return failCondition(err, std::string("creating segment ") + label, c);
        std::unique_ptr<DcmSegment> owned(segment);
        uint16_t lab[3];
        mld_rgb_to_dicom_lab(rgb, lab);
        c = segment->setRecommendedDisplayCIELabValue(lab[0], lab[1], lab[2]);
        if (c.bad()) return failCondition(err, "setting the segment colour", c);
        Uint16 number = 0;
        c = seg->doc->addSegment(segment, number);
        if (c.bad()) return failCondition(err, std::string("adding segment ") + label, c);
        owned.release();
        *segment_number = number;
        return MLD_OK;
    });
}

mld_status mld_seg_add_frame(mld_seg *seg, uint16_t segment_number, const uint8_t *mask, const double ipp[3],
                             uint32_t position_index, mld_file *source, char **err) {
    return guarded(err, [&] {
        if (!seg->doc->getSegment(segment_number))
            return fail(err, "unknown segment number " + std::to_string(segment_number));
        std::unique_ptr<FGPlanePosPatient> position(FGPlanePosPatient::createMinimal(
            formatDouble(ipp[0]).c_str(), formatDouble(ipp[1]).c_str(), formatDouble(ipp[2]).c_str()));
        if (!position) return fail(err, "invalid image position");

        FGFrameContent content;
        OFCondition c = content.setDimensionIndexValues(segment_number, 0);
        if (c.good()) c = content.setDimensionIndexValues(position_index, 1);
        if (c.bad()) return failCondition(err, "setting dimension index values", c);

        FGDerivationImage derivation;
        DcmDataset *src = source->format.getDataset();
        DerivationImageItem *item = nullptr;
        c = derivation.addDerivationImageItem(code("113076", "DCM", "Segmentation"), "", item);
        if (c.bad() || !item) return failCondition(err, "adding the derivation image", c);
        SourceImageItem *sourceItem = nullptr;
        c = item->addSourceImageItem(src, code("121322", "DCM", "Source image for image processing operation"),
                                     sourceItem);
        if (c.bad()) return failCondition(err, "referencing the source image", c);

        OFString sopClass, sopInstance;
        src->findAndGetOFString(DCM_SOPClassUID, sopClass);
        src->findAndGetOFString(DCM_SOPInstanceUID, sopInstance);
        if (seg->referencedInstances.insert(sopInstance.c_str()).second) {
            SOPInstanceReferenceMacro *ref = new SOPInstanceReferenceMacro;
            ref->setReferencedSOPClassUID(sopClass);
            ref->setReferencedSOPInstanceUID(sopInstance);
            seg->refSeries->getReferencedInstanceItems().push_back(ref);
        }

        OFVector<FGBase *> perFrame;
        perFrame.push_back(position.get());
        perFrame.push_back(&content);
        perFrame.push_back(&derivation);
        c = seg->doc->addFrame(const_cast<Uint8 *>(mask), segment_number, perFrame);
        if (c.bad()) return failCondition(err, "adding a frame", c);
        return MLD_OK;
    });
}

mld_status mld_seg_save(mld_seg *seg, const char *path, char **err) {
    return guarded(err, [&] {
        if (seg->doc->getNumberOfFrames() == 0) return fail(err, "a segmentation needs at least one frame");
        if (seg->refSeries) {
            seg->doc->getCommonInstanceReference().getReferencedSeriesItems().push_back(seg->refSeries);
            seg->refSeries = nullptr;
        }
        OFString date, time;
        DcmDate::getCurrentDate(date);
        // Fractions of a second: readers pick the newest SEG of an image by these, even two saved in one second.
        DcmTime::getCurrentTime(time, OFTrue, OFTrue);
        seg->doc->getSeries().setSeriesDate(date);
        seg->doc->getSeries().setSeriesTime(time);
        seg->doc->getGeneralImage().setContentDate(date);
        seg->doc->getGeneralImage().setContentTime(time);
        // Our frames are built consistently above; DCMTK's full functional-group check costs O(frames^2).
        seg->doc->setCheckFGOnWrite(OFFalse);
        DcmFileFormat file;
        DcmDataset *ds = file.getDataset();
        OFCondition c = seg->doc->writeDataset(*ds);
        if (c.bad()) return failCondition(err, "encoding the segmentation", c);
        // Attributes DCMTK 3.6.7 cannot set that readers look for. A SEG made from a label map has one segment per
        // voxel at most: SegmentsOverlap NO lets readers merge segments without checking every pixel. Each frame
        // lies exactly on its source slice: SpatialLocationsPreserved YES lets readers (highdicom) index frames
        // by their source images.
        c = ds->putAndInsertString(DCM_SegmentsOverlap, "NO");
        if (c.bad()) return failCondition(err, "setting SegmentsOverlap", c);
        DcmSequenceOfItems *perFrame = nullptr;
        if (ds->findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, perFrame).good() && perFrame) {
            for (unsigned long f = 0; f < perFrame->card(); ++f) {
                DcmSequenceOfItems *derivations = nullptr;
                if (perFrame->getItem(f)->findAndGetSequence(DCM_DerivationImageSequence, derivations).bad() || !derivations)
                    continue;
                for (unsigned long d = 0; d < derivations->card(); ++d) {
                    DcmSequenceOfItems *sources = nullptr;
                    if (derivations->getItem(d)->findAndGetSequence(DCM_SourceImageSequence, sources).bad() || !sources)
                        continue;
                    for (unsigned long s = 0; s < sources->card(); ++s) {
                        c = sources->getItem(s)->putAndInsertString(DCM_SpatialLocationsPreserved, "YES");
                        if (c.bad()) return failCondition(err, "setting SpatialLocationsPreserved", c);
                    }
                }
            }
        }
        // DCMTK 3.6.7 shifts frames that do not start on a byte boundary wrongly (frames of rows * columns bits
        // not divisible by 8): concatenate its byte-aligned frames bit by bit, LSB first, as DICOM packs them.
        const size_t frames = seg->doc->getNumberOfFrames(), bits = seg->pixelsPerFrame;
        std::vector<Uint8> packed((frames * bits + 7) / 8 + ((frames * bits + 7) / 8) % 2, 0);
        for (size_t f = 0; f < frames; ++f) {
            const DcmIODTypes::Frame *frame = seg->doc->getFrame(f);
            if (!frame || frame->length * 8 < bits) return fail(err, "a segmentation frame is missing its pixels");
            for (size_t b = 0; b < bits; ++b) {
                if ((frame->pixData[b >> 3] >> (b & 7)) & 1) {
                    size_t at = f * bits + b;
                    packed[at >> 3] |= static_cast<Uint8>(1u << (at & 7));
                }
            }
        }
        c = ds->putAndInsertUint8Array(DCM_PixelData, packed.data(), static_cast<unsigned long>(packed.size()));
        if (c.good()) c = file.saveFile(path, EXS_LittleEndianExplicit);
        if (c.bad()) return failCondition(err, std::string("writing ") + path, c);
        return MLD_OK;
    });
}

void mld_rgb_to_dicom_lab(const uint8_t rgb[3], uint16_t lab[3]) {
    double L = 0, a = 0, b = 0;
    IODCIELabUtil::rgb2DicomLab(L, a, b, rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0);
    lab[0] = static_cast<uint16_t>(std::lround(L));
    lab[1] = static_cast<uint16_t>(std::lround(a));
    lab[2] = static_cast<uint16_t>(std::lround(b));
}

void mld_dicom_lab_to_rgb(const uint16_t lab[3], uint8_t rgb[3]) {
    double r = 0, g = 0, b = 0;
    IODCIELabUtil::dicomLab2RGB(r, g, b, lab[0], lab[1], lab[2]);
    const double v[3] = {r, g, b};
    for (int i = 0; i < 3; ++i) {
        double x = std::round(v[i] * 255.0);
        rgb[i] = static_cast<uint8_t>(x < 0 ? 0 : (x > 255 ? 255 : x));
    }
}

} // extern "C"
