"""What comes in: input files read in bounded slices, texts and their encoder, in-memory data, synthetic batches."""
