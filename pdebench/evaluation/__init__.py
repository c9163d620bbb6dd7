"""Evaluation: metrics, leaderboard and plots."""
