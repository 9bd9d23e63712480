"""Judging a codec: metrics, baselines (Opus, Codec2, Lyra), the `telucodec eval` job
(plan -> runner -> evaluate), reports and plots. Training reuses its metrics and plots."""
