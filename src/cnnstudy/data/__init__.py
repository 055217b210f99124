"""Everything between a folder on disk and a batch on the device: sources and layouts, splits,
inspection, the decode-once cache, transforms and loaders, and the study-wide split store."""
