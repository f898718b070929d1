from mailcircle.cli import main

main()
