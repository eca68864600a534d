from egress_cni.main import main

main()
