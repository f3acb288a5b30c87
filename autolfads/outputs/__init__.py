"""autolfads.outputs"""
