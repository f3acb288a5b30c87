"""autolfads.tune"""
