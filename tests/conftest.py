"""Strict JAX settings for every test (as equinox does): float64 available, strict dtype
promotion, rank promotion raises, and 2 fake CPU devices for the multi-device tests."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
