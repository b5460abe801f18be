"""Campaign machinery: the embedded database, job stores, submission (issue 3, in progress)."""
