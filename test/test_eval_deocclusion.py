"""`occface eval`'s de-occlusion figures (ours vs cv2.inpaint on the hidden face pixels), the clean-image
false positives, their report tables and the examples sheet's parsing panels, on real photos."""
import json

import cv2
import numpy as np
import pytest

from occface_ros.app.samples import sample_path
from occface_ros.contracts import FrameResult
from occface_ros.core import labels as L
from occface_ros.evaluation import metrics
from occface_ros.evaluation.deocclusion import inpaint_baseline
from occface_ros.evaluation.examples import PANELS, Example, parsing_colours, write_examples
from occface_ros.evaluation.occluders import apply_occluder, occluder_seed
from occface_ros.evaluation.photo_eval import _photo_summary, deocclusion_filler, score_deocclusion
from occface_ros.evaluation.report import DEOCCLUSION_HEADER, FALSE_POSITIVE_HEADER, json_clean, write_report
from occface_ros.evaluation.summary import (
    DEOCCLUSION_OFF_HINT,
    build_targets,
    deocclusion_means,
    missed_summary,
    per_occluder_summary,
)

pytestmark = pytest.mark.unit

FACE_BOX = (180, 90, 290, 230)  # x0, y0, x1, y1: the astronaut's face (512 x 512 skimage sample)
BAR = (175, 140, 300, 175)  # a bar across her nose and mouth, wider than the face box


@pytest.fixture(scope="module")
def astronaut():
    """(clean, occluded by a flat bar, face region, bar mask, hidden face pixels)."""
    clean = cv2.imread(str(sample_path("skimage", "astronaut.png")), cv2.IMREAD_COLOR)
    assert clean is not None
    h, w = clean.shape[:2]
    region = np.zeros((h, w), bool)
    region[FACE_BOX[1]:FACE_BOX[3], FACE_BOX[0]:FACE_BOX[2]] = True
    bar = np.zeros((h, w), bool)
    bar[BAR[1]:BAR[3], BAR[0]:BAR[2]] = True
    occluded = clean.copy()
    occluded[bar] = (30, 200, 240)
    return clean, occluded, region, bar, bar & region


def frame_result(image, **maps) -> FrameResult:
    h, w = image.shape[:2]
    return FrameResult(faces=[], width=w, height=h, timestamp_s=0.0, **maps)


def test_scores_of_known_fillings(astronaut):
    clean, occluded, region, bar, hidden = astronaut
    # a perfect filling: PSNR inf, SSIM 1; cv2.inpaint with the perfect mask is finite and equals the oracle
    perfect = score_deocclusion(frame_result(clean, deoccluded_bgr=clean.copy()), clean, occluded, hidden, bar, bar)
    assert perfect["ours"]["psnr_db"] == float("inf")
    assert perfect["ours"]["ssim"] == pytest.approx(1.0, abs=1e-9)
    inpaint = perfect["cv2_inpaint"]
    assert 10.0 < inpaint["psnr_db"] < 60.0 and 0.0 < inpaint["ssim"] < 1.0
    assert perfect["cv2_inpaint_gt_mask"] == pytest.approx(inpaint)

    # a flat grey filling of the predicted pixels loses to cv2.inpaint on the same mask
    grey = occluded.copy()
    grey[bar] = 128
    sc = score_deocclusion(frame_result(clean, deoccluded_bgr=grey), clean, occluded, hidden, bar, bar)
    assert sc["ours"]["psnr_db"] < sc["cv2_inpaint"]["psnr_db"] - 1.0
    assert sc["ours"]["ssim"] < sc["cv2_inpaint"]["ssim"]
    means = deocclusion_means([sc, None, perfect])
    assert means["images"] == 2
    # PSNR: the perfect filling's inf leaves that image out of every PSNR column (paired means)
    assert means["ours"]["psnr_db"] == pytest.approx(sc["ours"]["psnr_db"])
    assert means["cv2_inpaint"]["psnr_db"] == pytest.approx(sc["cv2_inpaint"]["psnr_db"])
    assert means["psnr_gain_db"] == pytest.approx(sc["ours"]["psnr_db"] - sc["cv2_inpaint"]["psnr_db"])
    assert means["ours"]["ssim"] == pytest.approx((sc["ours"]["ssim"] + 1.0) / 2)  # SSIM: both images
    assert deocclusion_means([None, None]) is None


def test_the_baseline_uses_the_predicted_mask(astronaut):
    clean, occluded, region, bar, hidden = astronaut
    half = bar.copy()
    half[:, (BAR[0] + BAR[2]) // 2:] = False  # the pipeline found only the left half of the bar
    ours = inpaint_baseline(occluded, half)  # a filling of exactly the predicted pixels
    sc = score_deocclusion(frame_result(clean, deoccluded_bgr=ours), clean, occluded, hidden, half, bar)
    assert sc["ours"] == pytest.approx(sc["cv2_inpaint"])  # same mask, same filling
    # the oracle fills the whole bar: far better than leaving half the bar's colour on the face
    assert sc["cv2_inpaint_gt_mask"]["psnr_db"] > sc["cv2_inpaint"]["psnr_db"] + 3.0
    # no de-occluded image (deocclude off) or nothing of the face hidden: no entry
    assert score_deocclusion(frame_result(clean), clean, occluded, hidden, half, bar) is None
    empty = np.zeros_like(hidden)
    assert score_deocclusion(frame_result(clean, deoccluded_bgr=clean), clean, clean, empty, None, empty) is None


def test_filler_named_from_the_config():
    assert deocclusion_filler({"occlusion": {"enabled": True, "deocclude": False}}) == "off"
    assert "texture" in deocclusion_filler({"occlusion": {"enabled": True, "deocclude": True, "fisn": {}}})
    assert "w.pt" in deocclusion_filler({"occlusion": {"enabled": True, "deocclude": True,
                                                       "fisn": {"enabled": True, "weights": "w.pt"}}})
    assert "FISN" in deocclusion_filler({"occlusion": {"enabled": True, "deocclude": True, "fisn": {"enabled": True}}})


def _photo_record(name, clean_bgr, region, occlusions, fillings, clean_fp):
    """A photo record as photo_eval writes it, scored with the real functions; `fillings[k]` is the
    de-occluded image of occlusion k (None: not de-occluded)."""
    entries = []
    for occ, filled in zip(occlusions, fillings):
        hidden = occ.occluder_mask & region
        res = frame_result(clean_bgr, occlusion_mask=hidden, deoccluded_bgr=filled)
        entries.append({
            "occluder": occ.kind,
            "face_region_occluded_fraction": float(hidden.sum() / region.sum()),
            "nme": {"ours": 0.05, "mediapipe": None}, "missed": {"ours": 0, "mediapipe": None},
            "pose_change_deg": 1.0, "mask": metrics.mask_scores(hidden, hidden, region).as_dict(),
            "landmark_visibility_accuracy": None, "occlusion_ratio_error": None, "occlusion_by_region": None,
            "deocclusion": score_deocclusion(res, clean_bgr, occ.image_bgr, hidden, hidden, occ.occluder_mask),
            "process_ms": 10.0,
        })
    record = {"photo": name, "size": [clean_bgr.shape[1], clean_bgr.shape[0]], "ground_truth_landmarks": True,
              "faces": 1, "clean": {"nme": {"ours": 0.04, "mediapipe": None}, "missed": {"ours": 0, "mediapipe": None},
                                    "mask_false_positive_fraction": clean_fp, "stage_fields": {}},
              "occluded": entries}
    _photo_summary(record)
    return record


def _synthetic_summary(deocclusion, clean_fp):
    ours = {k: None for k in ("nme_clean", "nme_occluded", "nme_ratio", "pose_error_deg_clean",
                              "pose_error_deg_occluded", "pose_change_deg_mean", "pose_change_deg_max",
                              "mask_f1_mean", "mask_iou_mean", "landmark_visibility_accuracy")}
    ours.update(missed_clean=0, missed_occluded=0, deocclusion=deocclusion, clean_mask_false_positive_fraction=clean_fp)
    return {"frames": 4, "size": [320, 240], "occluded_frames": 2, "texture_photo": "astronaut", "ours": ours,
            "mediapipe": None}


def _report(tmp_path, photos, kinds, synthetic=None) -> tuple[str, dict]:
    data = json_clean({
        "generated": "now", "quick": True, "device": "cpu", "occlusion_stage": "on",
        "reference": {"enabled": False, "name": "MediaPipe", "note": "off"},
        "targets": build_targets(photos, [], synthetic), "missed": missed_summary(photos, synthetic),
        "photos": photos, "occluders": per_occluder_summary(photos, kinds), "jitter": [],
        "synthetic": synthetic, "synthetic_note": None if synthetic else "skipped", "synthetic_yaw_bins": None,
        "notes": [], "timing": {},
    })
    json.dumps(data)  # metrics.json stays writable
    write_report(tmp_path / "report.md", data)
    return (tmp_path / "report.md").read_text(), data


@pytest.fixture(scope="module")
def lenna_occlusions(annotated_photos):
    photo = annotated_photos[2]
    h, w = photo.image_bgr.shape[:2]
    region = metrics.face_region_mask(photo.landmarks68, h, w)
    occ = [apply_occluder(kind, photo.image_bgr, [photo.landmarks68], occluder_seed(photo.name, kind))
           for kind in ("mask_blue", "sunglasses")]
    return photo, region, occ


def test_report_tables_with_deocclusion(tmp_path, lenna_occlusions):
    photo, region, occ = lenna_occlusions
    # ours: a perfect filling of the mask, a grey one of the sunglasses
    grey = occ[1].image_bgr.copy()
    grey[occ[1].occluder_mask & region] = 128
    record = _photo_record(photo.name, photo.image_bgr, region, occ, [photo.image_bgr.copy(), grey], 0.01)
    syn = _synthetic_summary(record["summary"]["ours"]["deocclusion"], 0.05)
    text, data = _report(tmp_path, [record], ("mask_blue", "sunglasses"), syn)

    section = text.split("## De-occlusion (hidden face pixels)\n")[1].split("\n## ")[0]
    assert DEOCCLUSION_HEADER in section
    rows = {line.split(" | ")[0].lstrip("| "): line for line in section.splitlines() if line.startswith("| ")}
    assert {"mask_blue", "sunglasses", "**all photos**", "synthetic (bar, occluded frames)"} <= set(rows)
    assert rows["mask_blue"].split(" | ")[2] == "n/a"  # PSNR inf (perfect) is not a number in metrics.json
    sunglasses = next(r for r in data["occluders"] if r["occluder"] == "sunglasses")["deocclusion"]
    assert sunglasses["psnr_gain_db"] < 0  # grey loses to cv2.inpaint
    assert f"{sunglasses['psnr_gain_db']:.2f}" in rows["sunglasses"]
    assert "Target (photos): PSNR >= cv2.inpaint + 2 dB, SSIM higher" in section
    psnr = next(t for t in data["targets"] if t["key"] == "deocclusion_psnr_gain_photos")
    assert psnr["result"] == "FAIL" and "**FAIL**" in section

    fp = text.split("## False positives on clean images\n")[1].split("\n## ")[0]
    assert FALSE_POSITIVE_HEADER in fp
    assert "| lenna | 0.010 | | |" in fp
    assert "| **mean over the photos** | 0.010 | <= 0.03 | **pass** |" in fp
    assert "| synthetic sequence, clean run (mean over frames) | 0.050 | <= 0.03 | **FAIL** |" in fp


def test_report_without_deocclusion(tmp_path, lenna_occlusions):
    photo, region, occ = lenna_occlusions
    record = _photo_record(photo.name, photo.image_bgr, region, occ, [None, None], None)
    text, data = _report(tmp_path, [record], ("mask_blue", "sunglasses"))
    section = text.split("## De-occlusion (hidden face pixels)\n")[1].split("\n## ")[0]
    assert DEOCCLUSION_HEADER not in section and DEOCCLUSION_OFF_HINT in section
    assert section.strip().count("\n") == 0  # one line
    for key in ("deocclusion_psnr_gain_photos", "deocclusion_ssim_gain_photos", "mask_false_positive_photos"):
        t = next(t for t in data["targets"] if t["key"] == key)
        assert t["result"] == "n/a" and "**n/a**" in text
    fp = text.split("## False positives on clean images\n")[1].split("\n## ")[0]
    assert fp.strip().startswith("n/a: no occlusion mask") and FALSE_POSITIVE_HEADER not in fp


def test_examples_sheet_shows_the_parsing_maps(tmp_path, astronaut):
    clean, occluded, region, bar, hidden = astronaut
    parsing = np.zeros(region.shape, np.uint8)
    parsing[region] = L.SKIN
    parsing[150:165, 200:230] = L.RIGHT_EYE
    filled = inpaint_baseline(occluded, bar)
    full = frame_result(occluded, occlusion_mask=hidden, parsing=parsing, deoccluded_bgr=filled)
    bare = frame_result(occluded)  # the stage off: n/a tiles
    size = 200
    examples = [Example("full", occluded, full, hidden, region), Example("bare", occluded, bare, hidden, region)]
    write_examples(tmp_path / "examples.png", examples, np.zeros((0, 3), np.int64), size)
    sheet = cv2.imread(str(tmp_path / "examples.png"))
    assert sheet.shape[1] == len(PANELS) * size == 6 * size
    assert PANELS[1].startswith("visible parsing") and PANELS[2].startswith("M_gamma")

    def tile(row, col):
        return sheet[40 + row * size + 20:40 + (row + 1) * size, col * size:(col + 1) * size].reshape(-1, 3)

    def has(pixels, colour, tol=8):
        return int((np.abs(pixels.astype(int) - colour).max(1) <= tol).sum())

    occluder, skin = parsing_colours(np.array([[L.OCCLUDER, L.SKIN]]))[0]
    assert has(tile(0, 1), occluder) > 500  # visible parsing: the bar is the occluder
    assert has(tile(0, 2), occluder) == 0 and has(tile(0, 2), skin) > has(tile(0, 1), skin)  # M_gamma: complete
    assert has(tile(0, 5), (30, 200, 240), tol=20) < 50  # de-occluded: the bar's colour is gone from the face
    assert has(tile(0, 0), (30, 200, 240), tol=20) > 500  # it is in the input
    for col in (1, 2, 5):  # n/a tiles: flat grey with a label
        assert has(tile(1, col), (40, 40, 40), tol=0) > 0.9 * tile(1, col).shape[0]
    legend = sheet[40 + 2 * size:]
    assert legend.shape[0] > 20 and has(legend.reshape(-1, 3), occluder, tol=0) > 100
