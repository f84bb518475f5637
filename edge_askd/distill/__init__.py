"""Distillation: a student built from its teacher, trained on the teacher's distributions and the references.

    student.py       the student: teacher layers copied (STUDENT_PRESETS), saved as a Hugging Face checkpoint
    length_aware.py  the encoder and decoder passes on the unpadded mel (the student's input)
    losses.py        CE, token KL (full and top-k), hidden-state MSE, and how they combine
    schedules.py     the teacher weight lambda(t) (ASKD's decay) and the self-KD weight beta(t)
    config.py        DistillConfig: every training setting and its default, read from a TOML recipe
    dataset.py       training examples: clips, augmentation, joined clips, length-bucketed batches per rank
    trainer.py       the loop: one optimizer step, checkpoints and exact resume, the teacher cache, evaluation
    experiment.py    the method comparison (CE vs static KD vs ASKD) behind `make experiment`

`python -m edge_askd.distill --config CFG` (or `edge-askd distill`) trains; torchrun runs the same on N processes.
"""
