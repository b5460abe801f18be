"""Fine-tuning a matgl potential on MDR harmonic force constants (paper step 1).

``dataset``: MDR entries -> random-displacement supercells with F = -Phi u (extxyz + manifest).
``training``: matgl/lightning fine-tuning from a pretrained potential, checkpointed and resumable.
``evaluation``: model vs DFT commensurate frequencies, zero-shot and fine-tuned side by side.
"""
