"""Grid maps shipped with gridlink, the script that makes the sample, synthetic layers."""
