"""autolfads.tracking"""
