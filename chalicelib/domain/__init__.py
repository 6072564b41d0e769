"""The distribution job and its rules: pure Python, no boto3, no clock of its own."""
