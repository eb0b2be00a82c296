"""memoryd.daemon"""
