"""CogVideoX1.5-5B's published configurations (THUDM/CogVideoX1.5-5B: vae/, transformer/, scheduler/),
for random-weight timing runs of the full-scale architecture (real runs read the checkpoint's own), and
tiny configurations of the same modules for smoke runs and tests."""

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
COGVIDEOX_1_5_LAYOUT = {  # what 1.5 changes in the transformer: temporal patches and rotary positions
    "patch_size_t": 2,
    "use_rotary_positional_embeddings": True,
    "patch_bias": False,
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
    "max_text_seq_length": 224,
    "temporal_compression_ratio": 4,
    **COGVIDEOX_1_5_LAYOUT,
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

TINY_VAE = {
    **COGVIDEOX_1_5_VAE,
    "block_out_channels": (8, 16, 16, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
}
TINY_TRANSFORMER = {  # the CogVideoX 1.0 layout; add COGVIDEOX_1_5_LAYOUT for 1.5
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "time_embed_dim": 16,
    "text_embed_dim": 32,
    "num_layers": 2,
    "sample_width": 64,
    "sample_height": 64,
    "sample_frames": 9,
    "patch_size": 2,
    "max_text_seq_length": 8,
    "temporal_compression_ratio": 4,
}
