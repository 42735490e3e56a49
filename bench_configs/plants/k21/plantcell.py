# the planted cell with 21 recurrent products a step (../plantlib.py)
from plantlib import plant_cell

Plant = plant_cell(products=21)
