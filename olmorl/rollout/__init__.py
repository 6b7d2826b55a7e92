"""Rollout: vLLM AsyncLLM engines as Ray actors, and the weight transports that feed them."""
