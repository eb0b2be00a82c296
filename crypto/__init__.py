"""memoryd.crypto"""
