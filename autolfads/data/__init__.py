"""autolfads.data"""
