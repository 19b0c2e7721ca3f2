"""Where bytes live: the layout of the data root and one filesystem layer for local disk and S3."""
