from imgrec.cli import main

main()
