"""autolfads.model"""
