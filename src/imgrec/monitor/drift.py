"""Tests of shift between a reference window and a current one, and their combined verdict.

Each test answers one question with a statistic, a p-value, an effect size and one plain
sentence: did the images move in the model's feature space (maximum mean discrepancy with an
RBF kernel, permutation test), is the model more or less sure (two-sample Kolmogorov-Smirnov
on the top-1 confidence), does it predict another class mix (chi-square), are the inputs
darker, flatter, softer or of another size (Kolmogorov-Smirnov per property)? Holm's method
keeps the chance of any false alarm at `alpha` over all of them, and a shift is only called
drift when its effect is at least small: on a window of 100 000 images a change nobody would
notice is "significant" but not a reason to retrain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from imgrec.errors import ImgrecError
from imgrec.monitor.window import MIN_IMAGES, PROPERTY_NAMES, Window

ALPHA = 0.05
PERMUTATIONS = 500
MAX_MMD_IMAGES = 500  # per window; the permutation test stays well under a second
MIN_EXPECTED = 5.0  # classes expected fewer times than this are merged for the chi-square test
EFFECTS = ("negligible", "small", "moderate", "large")
# upper bounds of negligible / small / moderate, per effect measure
KS_BOUNDS = (0.1, 0.25, 0.5)  # Kolmogorov-Smirnov D: the largest gap between the two CDFs
CRAMER_BOUNDS = (0.1, 0.3, 0.5)  # Cramér's V, Cohen's conventions
MMD_BOUNDS = (0.1, 0.25, 0.5)  # MMD (not squared) with the median-distance RBF kernel

_IMAGES_ARE = "the images are "
_PROPERTY_WORDS = {  # (lower, higher, format) as a person would say it
    "brightness": ("darker", "brighter", "{:.2f}"),
    "contrast": ("flatter (lower contrast)", "more contrasted", "{:.3f}"),
    "sharpness": ("softer (blurrier)", "sharper or noisier", "{:.3f}"),
    "width": ("narrower", "wider", "{:.0f} px"),
    "height": ("shorter", "taller", "{:.0f} px"),
}


@dataclass
class ShiftTest:
    """One test's outcome; `p_adjusted` and `significant` are set when tests are combined."""

    name: str
    title: str
    statistic: float
    p_value: float
    effect: float
    effect_size: str
    line: str  # one plain sentence: what changed, how much, how sure
    phrase: str  # what changed, for the verdict ("the images are darker")
    details: dict = field(default_factory=dict)
    skipped: str | None = None  # why the test did not run (too few signatures, ...)
    p_adjusted: float | None = None
    significant: bool = False

    @property
    def shifted(self) -> bool:
        """Significant after correction and not negligible in size."""
        return self.significant and self.effect_size != "negligible"

    def to_json(self) -> dict:
        data = asdict(self)
        data["shifted"] = self.shifted
        data["details"] = {k: v for k, v in self.details.items() if k != "null"}
        return data


def effect_size(value: float, bounds: tuple[float, float, float]) -> str:
    """negligible / small / moderate / large for an effect measure with these bounds."""
    for word, bound in zip(EFFECTS, bounds, strict=False):
        if value < bound:
            return word
    return EFFECTS[-1]


def _skipped(name: str, title: str, why: str) -> ShiftTest:
    line = f"{title}: not run ({why})."
    return ShiftTest(name, title, 0.0, 1.0, 0.0, "negligible", line, "", skipped=why)


# ---- embedding shift: maximum mean discrepancy ------------------------------------------------
def mmd_test(
    reference: np.ndarray,
    current: np.ndarray,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    max_images: int = MAX_MMD_IMAGES,
) -> ShiftTest:
    """Maximum mean discrepancy between two sets of signatures (rows), RBF kernel with the
    median pairwise distance as bandwidth, p-value from `permutations` label shuffles."""
    title = "Embedding shift (MMD)"
    rng = np.random.default_rng(seed)
    x, y = _subsample(reference, max_images, rng), _subsample(current, max_images, rng)
    if min(len(x), len(y)) < MIN_IMAGES:
        why = f"needs {MIN_IMAGES} signatures per window, has {len(x)} and {len(y)}"
        return _skipped("embedding", title, why)
    z = np.concatenate([x, y]).astype(np.float64)
    squared = np.maximum((z * z).sum(1)[:, None] + (z * z).sum(1)[None, :] - 2.0 * z @ z.T, 0.0)
    off_diagonal = squared[~np.eye(len(z), dtype=bool)]
    median = float(np.median(off_diagonal))
    bandwidth = float(np.sqrt(median)) if median > 0 else 1.0
    kernel = np.exp(-squared / (2.0 * bandwidth**2))
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out k(z_i, z_i)
    m, n = len(x), len(y)

    def mmd2(labels: np.ndarray) -> np.ndarray:
        """Unbiased MMD² for each column of a (m + n, k) 0/1 matrix (1 = reference)."""
        a, b = labels, 1.0 - labels
        kxx = (a * (kernel @ a)).sum(0) / (m * (m - 1))
        kyy = (b * (kernel @ b)).sum(0) / (n * (n - 1))
        kxy = (a * (kernel @ b)).sum(0) / (m * n)
        return kxx + kyy - 2.0 * kxy

    observed_labels = np.zeros((m + n, 1))
    observed_labels[:m] = 1.0
    observed = float(mmd2(observed_labels)[0])
    shuffles = np.zeros((m + n, permutations))
    for j in range(permutations):
        shuffles[rng.permutation(m + n)[:m], j] = 1.0
    null = mmd2(shuffles)
    p = float((1 + np.sum(null >= observed)) / (1 + permutations))
    mmd = float(np.sqrt(max(observed, 0.0)))
    size = effect_size(mmd, MMD_BOUNDS)
    line = (
        f"Where the images land in the model's feature space: MMD {mmd:.3f} (effect: {size}), "
        f"p = {p:.3g} from {permutations} permutations."
    )
    return ShiftTest(
        "embedding",
        title,
        observed,
        p,
        mmd,
        size,
        line,
        "the images look different to the model",
        {
            "mmd2": observed,
            "bandwidth": bandwidth,
            "permutations": permutations,
            "reference_used": m,
            "current_used": n,
            "null": null,
        },
    )


def _subsample(rows: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(rows) <= limit:
        return rows
    return rows[np.sort(rng.choice(len(rows), limit, replace=False))]


# ---- distributions of one number: Kolmogorov-Smirnov -------------------------------------------
def ks_test(
    name: str,
    title: str,
    reference: np.ndarray,
    current: np.ndarray,
    words: tuple[str, str, str, str],
) -> ShiftTest:
    """Two-sample KS on one per-image number (NaN left out); `words` are (subject, lower,
    higher, value format): ("the images are", "darker", "brighter", "{:.2f}")."""
    x = reference[np.isfinite(reference)]
    y = current[np.isfinite(current)]
    if min(len(x), len(y)) < MIN_IMAGES:
        return _skipped(name, title, f"known for {len(x)} and {len(y)} images only")
    result = stats.ks_2samp(x, y)
    d, p = float(result.statistic), float(result.pvalue)
    size = effect_size(d, KS_BOUNDS)
    ref_median, cur_median = float(np.median(x)), float(np.median(y))
    subject, lower, higher, fmt = words
    direction = lower if cur_median < ref_median else higher
    if cur_median == ref_median:
        subject, direction = f"the {name} is", "spread differently"
    medians = f"median {fmt.format(cur_median)} vs {fmt.format(ref_median)} in the reference"
    line = f"{title}: {medians}; KS D {d:.3f} (effect: {size}), p = {p:.3g}."
    return ShiftTest(
        name,
        title,
        d,
        p,
        d,
        size,
        line,
        f"{subject} {direction}",
        {
            "reference_median": ref_median,
            "current_median": cur_median,
            "reference_n": len(x),
            "current_n": len(y),
        },
    )


def confidence_test(reference: Window, current: Window) -> ShiftTest:
    words = ("the model is", "less sure", "surer", "{:.2f}")
    return ks_test(
        "confidence", "Top-1 confidence", reference.confidence, current.confidence, words
    )


def property_tests(reference: Window, current: Window) -> list[ShiftTest]:
    tests = []
    for j, name in enumerate(PROPERTY_NAMES):
        words = (_IMAGES_ARE.strip(), *_PROPERTY_WORDS[name])
        column = (reference.properties[:, j], current.properties[:, j])
        tests.append(ks_test(name, name.capitalize(), *column, words))
    return tests


# ---- predicted class mix: chi-square -----------------------------------------------------------
def class_mix_test(reference: np.ndarray, current: np.ndarray) -> ShiftTest:
    """Chi-square test of the 2 x classes table of predicted labels; classes expected fewer
    than MIN_EXPECTED times in either window are merged into one 'other classes' column."""
    title = "Predicted class mix"
    if min(len(reference), len(current)) < MIN_IMAGES:
        return _skipped("class_mix", title, "too few images")
    classes = sorted(set(reference.tolist()) | set(current.tolist()))
    table = np.array(
        [[np.sum(reference == c) for c in classes], [np.sum(current == c) for c in classes]],
        dtype=float,
    )
    share = table.sum(0) / table.sum()
    expected = np.outer(table.sum(1), share)
    rare = (expected < MIN_EXPECTED).any(0)
    names = [c for c, r in zip(classes, rare, strict=True) if not r]
    merged = [c for c, r in zip(classes, rare, strict=True) if r]
    columns = table[:, ~rare]
    if rare.any():
        columns = np.concatenate([columns, table[:, rare].sum(1, keepdims=True)], axis=1)
        names.append("other classes")
    columns = columns[:, columns.sum(0) > 0]
    fractions = table / table.sum(1, keepdims=True)
    gaps = fractions[1] - fractions[0]
    biggest = int(np.argmax(np.abs(gaps)))
    mix = {
        c: {"reference": int(table[0, i]), "current": int(table[1, i])}
        for i, c in enumerate(classes)
    }
    details = {"counts": mix, "merged": merged}
    if columns.shape[1] < 2:
        line = f"{title}: one class only ('{classes[0]}') in both windows; nothing to compare."
        return ShiftTest("class_mix", title, 0.0, 1.0, 0.0, "negligible", line, "", details)
    chi2, p, dof, _ = stats.chi2_contingency(columns, correction=False)
    v = float(np.sqrt(chi2 / columns.sum()))  # Cramér's V of a 2-row table
    size = effect_size(v, CRAMER_BOUNDS)
    name = classes[biggest]
    line = (
        f"{title}: '{name}' {fractions[1, biggest]:.0%} of predictions vs "
        f"{fractions[0, biggest]:.0%} in the reference; chi-square {chi2:.1f} "
        f"({dof} df), Cramér's V {v:.2f} (effect: {size}), p = {p:.3g}."
    )
    phrase = f"the model predicts '{name}' {'more' if gaps[biggest] > 0 else 'less'} often"
    return ShiftTest("class_mix", title, float(chi2), float(p), v, size, line, phrase, details)


# ---- all tests, corrected -----------------------------------------------------------------------
def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values: reject where adjusted <= alpha keeps the family-wise error at
    alpha under any dependence between the tests."""
    k = len(p_values)
    order = np.argsort(p_values)
    adjusted = np.empty(k)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


@dataclass
class DriftResult:
    """All tests of one comparison and what they add up to."""

    tests: list[ShiftTest]
    alpha: float
    reference: dict
    current: dict

    @property
    def shifted(self) -> list[ShiftTest]:
        return [t for t in self.tests if t.shifted]

    @property
    def drift(self) -> bool:
        return bool(self.shifted)

    @property
    def verdict(self) -> str:
        """'drift', 'negligible' (significant but tiny shifts only) or 'no drift'."""
        if self.drift:
            return "drift"
        if any(t.significant for t in self.tests):
            return "negligible"
        return "no drift"

    @property
    def headline(self) -> str:
        if self.drift:
            phrases, looks = [], []  # "the images are darker and softer", not twice "the images"
            for t in sorted(self.shifted, key=lambda t: -t.effect):
                if t.phrase.startswith(_IMAGES_ARE):
                    if not looks:
                        phrases.append("")
                    looks.append(t.phrase.removeprefix(_IMAGES_ARE))
                else:
                    phrases.append(t.phrase)
            if looks:
                phrases[phrases.index("")] = _IMAGES_ARE + _join(looks)
            return "Drift: " + _join(phrases) + "."
        if self.verdict == "negligible":
            small = [t.title.lower() for t in self.tests if t.significant]
            return (
                f"No meaningful drift: {_join(small)} changed measurably, but by a negligible "
                "amount."
            )
        return "No drift: the current images look like the reference to every test."

    @property
    def advice(self) -> list[str]:
        """What to do next, given which tests fired."""
        if not self.drift:
            return ["Nothing to do; run the check again on the next window."]
        names = {t.name for t in self.shifted}
        steps = []
        if names & set(PROPERTY_NAMES):
            steps.append(
                "Check the camera and the image pipeline: exposure and lighting (brightness, "
                "contrast), focus and compression (sharpness), resolution (width, height)."
            )
        steps.append(
            "Label a sample of the current images (a hundred is a good start) and measure "
            "the model on it: imgrec evaluate MODEL labelled/."
        )
        steps.append(
            "If accuracy dropped, retrain with the newly labelled images added (imgrec retrain)."
        )
        return steps

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "drift": self.drift,
            "headline": self.headline,
            "alpha": self.alpha,
            "correction": "holm",
            "reference": self.reference,
            "current": self.current,
            "tests": [t.to_json() for t in self.tests],
            "advice": self.advice,
        }


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def check_size(window: Window, role: str) -> None:
    """Refuse a window too small for any test to mean something."""
    if len(window) < MIN_IMAGES:
        skipped = f" ({len(window.skipped)} unreadable skipped)" if window.skipped else ""
        raise ImgrecError(
            f"the {role} window ({window.source}) has {len(window)} images{skipped}; drift "
            f"tests need at least {MIN_IMAGES} in each window."
        )


def compare_windows(
    reference: Window,
    current: Window,
    alpha: float = ALPHA,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    skip: dict[str, str] | None = None,
) -> DriftResult:
    """Run every test, adjust the p-values (Holm) and combine them into one verdict; `skip`
    maps the names of tests that cannot be trusted here to the reason."""
    if not 0 < alpha < 1:
        raise ImgrecError(f"alpha must be between 0 and 1, not {alpha}.")
    check_size(reference, "reference")
    check_size(current, "current")
    tests = [
        mmd_test(reference.signature_rows, current.signature_rows, permutations, seed),
        confidence_test(reference, current),
        class_mix_test(reference.labels, current.labels),
        *property_tests(reference, current),
    ]
    for name, why in (skip or {}).items():
        tests = [_skipped(t.name, t.title, why) if t.name == name else t for t in tests]
    ran = [t for t in tests if t.skipped is None]
    for test, adjusted in zip(ran, holm([t.p_value for t in ran]), strict=True):
        test.p_adjusted = adjusted
        test.significant = adjusted <= alpha
    return DriftResult(tests, alpha, reference.summary(), current.summary())
