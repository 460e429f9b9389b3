"""Reports, below the steps and studies: measured-vs-reported tables (`tables`), the paper's
figures (`figures`) and the paper's own numbers (`paper_results`)."""
