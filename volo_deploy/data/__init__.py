"""Images in, model-ready arrays out: eval transform, dataset layouts, subsets, demo data."""
