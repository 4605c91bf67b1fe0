"""Code shared by the Lambda functions; the only part of Serendip that talks to AWS."""
