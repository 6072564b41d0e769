"""Everything that talks to AWS. boto3 appears nowhere else in chalicelib."""
