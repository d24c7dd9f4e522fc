from densecaption.cli import main

main()
