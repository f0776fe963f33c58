"""A table of samples in memory: features, labels and the ids that say whose they are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLES_PER_SUBJECT = 3  # built-in data has no owners; we assign 3 samples per person


@dataclass
class Split:
    """One table of the sample store, held as numpy arrays."""

    features: np.ndarray  # [N, D] float32, flattened
    labels: np.ndarray  # [N] int64
    sample_ids: np.ndarray  # [N] str
    subject_ids: np.ndarray  # [N] str
    shape: tuple[int, ...]  # input shape of one sample, e.g. (1, 28, 28) or (64,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask_or_index: np.ndarray) -> "Split":
        return Split(
            self.features[mask_or_index],
            self.labels[mask_or_index],
            self.sample_ids[mask_or_index],
            self.subject_ids[mask_or_index],
            self.shape,
        )
