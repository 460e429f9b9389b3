"""Data layer: raw layouts → Parquet clip datasets → training clips and tracking frames (docs/data.md).

sequences (raw MOTChallenge folders) / crowdhuman → parquet_io (writer, manifest) → reader (frames,
frame index, gt export) / loader (training clips) / pseudo_label_store; images (the one decoder),
transforms (clip augmentation), synthetic (the embedded benchmark's generator).
"""
