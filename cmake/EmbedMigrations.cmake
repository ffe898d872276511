file(WRITE ${OUT} "// placeholder\n")
