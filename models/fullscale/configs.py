"""CogVideoX1.5-5B's published configurations (THUDM/CogVideoX1.5-5B: vae/, transformer/, scheduler/),
for random-weight timing runs of the full-scale architecture; real runs read the checkpoint's own."""

from __future__ import annotations

COGVIDEOX_1_5_VAE = {
    "block_out_channels": (128, 256, 256, 512),
    "layers_per_block": 3,
    "latent_channels": 16,
    "norm_num_groups": 32,
    "temporal_compression_ratio": 4,
    "scaling_factor": 0.7,
    "invert_scale_latents": True,
}
COGVIDEOX_1_5_5B_TRANSFORMER = {
    "num_attention_heads": 48,
    "attention_head_dim": 64,
    "in_channels": 16,
    "out_channels": 16,
    "time_embed_dim": 512,
    "text_embed_dim": 4096,
    "num_layers": 42,
    "sample_width": 300,
    "sample_height": 300,
    "sample_frames": 81,
    "patch_size": 2,
    "patch_size_t": 2,
    "patch_bias": False,
    "max_text_seq_length": 224,
    "temporal_compression_ratio": 4,
    "use_rotary_positional_embeddings": True,
}
COGVIDEOX_1_5_SCHEDULER = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "snr_shift_scale": 1.0,
    "timestep_spacing": "trailing",
}
