DROP TABLE upload_refs;
