"""CSDR Node push: partners subscribe to an area and receive every new matching scene."""
